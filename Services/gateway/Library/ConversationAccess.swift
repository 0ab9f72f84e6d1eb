import SwitchboardContracts
import SwitchboardRedis

/// Who may use a conversation: its owner (the first user to write to or open it) and its members
/// (`sb:{conversation:<id>}:members`, filled by the conversation API).
public struct ConversationAccess: Sendable {
    private let redis: RedisClient

    public init(redis: RedisClient) {
        self.redis = redis
    }

    static func ownerKey(_ conversationID: String) -> String { "sb:{conversation:\(conversationID)}:owner" }
    static func membersKey(_ conversationID: String) -> String { "sb:{conversation:\(conversationID)}:members" }

    /// Claims an unowned conversation for `userID`, and says whether `userID` may use it.
    public func authorize(userID: String, conversationID: String) async throws -> Bool {
        // SET NX GET: one round trip both claims a new conversation and reads an existing owner.
        let previous = try await redis.send("SET", RedisArgument(Self.ownerKey(conversationID)), RedisArgument(userID), "NX", "GET")
        guard let owner = previous.string else { return true }
        if owner == userID { return true }
        let member = try await redis.send("SISMEMBER", RedisArgument(Self.membersKey(conversationID)), RedisArgument(userID))
        return member.integer == 1
    }
}
