import Foundation
import SwitchboardContracts

/// What the orchestrator keeps per conversation in Redis: the run in progress, the messages waiting
/// for it (the busy policy is `enqueue`), ids already seen, and recent history for the roles' context.
public struct ConversationRecord: Codable, Sendable, Equatable {
    public struct Queued: Codable, Sendable, Equatable {
        public var message: ChatMessageSubmitted
        public var traceparent: String
    }

    /// A client message id a user already sent, and the message it became.
    public struct ClientMessage: Codable, Sendable, Equatable {
        public var userId: String
        public var clientMessageId: String
        public var messageId: String
    }

    public var run: CollaborationRun?
    public var queue: [Queued] = []
    /// Message ids already accepted (the newest 200): a redelivered event starts nothing.
    public var seen: [String] = []
    /// Client message ids already used, per user (the newest 200): a reused one is answered
    /// MESSAGE_REJECTED `duplicate` naming the first message (nil in records written before).
    public var clientMessages: [ClientMessage]? = nil
    public var history: [ConversationTurn] = []
    /// The role asked to lead the next run (REQUEST_ROLE_FOCUS); used once.
    public var focus: String? = nil

    public init() {}
}
