import Foundation

// The data of the commands a client sends on the chat-centre socket (seed 000), as the CLI and the
// benches build them; the gateway's reading of each is in CommandHandler.

/// A command's data, with the command type it travels as.
public protocol CommandPayload: Codable, Sendable {
    static var commandType: String { get }
}

extension ClientCommand {
    public init(id: String, payload: some CommandPayload) throws {
        self.init(id: id, type: Swift.type(of: payload).commandType, data: try JSONValueEncoder().encode(payload))
    }
}

/// SEND_MESSAGE.
public struct SendMessage: CommandPayload, Equatable {
    public static let commandType = ClientCommandType.sendMessage
    public var conversationId: String
    public var content: String
    /// A collaboration pattern the run must use (`CollaborationPattern`'s raw values); the planner's choice when nil.
    public var pattern: String?

    public init(conversationId: String, content: String, pattern: String? = nil) {
        self.conversationId = conversationId
        self.content = content
        self.pattern = pattern
    }
}

/// SUBSCRIBE_CONVERSATION, from the start of what is kept or resuming after `position`.
public struct SubscribeConversation: CommandPayload, Equatable {
    public static let commandType = ClientCommandType.subscribeConversation
    public var conversationId: String
    public var offset: Int64?
    public var epoch: String?

    public init(conversationId: String, resumingAfter position: StreamPosition? = nil) {
        self.conversationId = conversationId
        self.offset = position?.offset
        self.epoch = position?.epoch
    }
}
