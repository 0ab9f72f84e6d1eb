import SwitchboardContracts
import SwitchboardRedis

/// Who may use a conversation: its owner (the first user to write to or open it) and its members
/// (`Keyspace.Conversation.members`, filled by the conversation API).
///
/// The owner key is a cache of a durable fact: once a conversation has history, PostgreSQL's session
/// row names its owner. When Redis has no owner key (it expired, or Redis lost it), that row decides
/// before anyone may claim the id, so a conversation id reused by another user never reaches the
/// first user's stream or history.
public struct ConversationAccess: Sendable {
    public typealias DurableOwner = @Sendable (_ conversationID: String) async throws -> String?

    private let redis: RedisClient
    private let durableOwner: DurableOwner

    /// Owner keys live this long after their last use; one-off conversations (a front-door request
    /// without a conversation id) so do not accumulate, and a used one is restored from PostgreSQL.
    static let ownerLifetimeSeconds = 7 * 24 * 3600

    public init(redis: RedisClient, durableOwner: @escaping DurableOwner) {
        self.redis = redis
        self.durableOwner = durableOwner
    }

    /// Claims an unowned conversation for `userID`, and says whether `userID` may use it.
    public func authorize(userID: String, conversationID: String) async throws -> Bool {
        let key = RedisArgument(Keyspace.Conversation.owner(conversationID))
        let lifetime = RedisArgument(Self.ownerLifetimeSeconds)
        // GETEX: one round trip reads the owner and keeps the key alive while the conversation is used.
        var owner = try await redis.send("GETEX", key, "EX", lifetime).string
        if owner == nil {
            if let recorded = try await durableOwner(conversationID) {
                // The durable owner wins over any claim made meanwhile.
                _ = try await redis.send("SET", key, RedisArgument(recorded), "EX", lifetime)
                owner = recorded
            } else {
                // SET NX GET: claims a new conversation, or reads the owner of a racing claim.
                owner =
                    try await redis.send("SET", key, RedisArgument(userID), "NX", "GET", "EX", lifetime).string
                    ?? userID
            }
        }
        if owner == userID { return true }
        let member = try await redis.send(
            "SISMEMBER", RedisArgument(Keyspace.Conversation.members(conversationID)), RedisArgument(userID))
        return member.integer == 1
    }
}
