import Foundation

// The gateway's own frames on the chat-centre socket (seed 000): the answers to commands (ACK data,
// PONG, CONVERSATION_HISTORY), the role snapshot a joining client gets, and the ephemeral presence and
// typing events. Field names and JSON types are those the frames had when they were built by hand.

/// PRESENCE_JOIN or PRESENCE_LEAVE (the sender chooses): a connection of `userId` joined or left the
/// conversation. Ephemeral.
public struct Presence: Codable, Sendable, Equatable {
    public var conversationId: String
    public var userId: String
    public var connectionId: String

    public init(conversationId: String, userId: String, connectionId: String) {
        self.conversationId = conversationId
        self.userId = userId
        self.connectionId = connectionId
    }
}

/// TYPING_START or TYPING_STOP (the command's own type) as the conversation's subscribers see it. Ephemeral.
public struct Typing: Codable, Sendable, Equatable {
    public var conversationId: String
    public var userId: String

    public init(conversationId: String, userId: String) {
        self.conversationId = conversationId
        self.userId = userId
    }
}

/// PONG: the answer to PING; times in epoch milliseconds, `latency` = `serverTime` - `timestamp` (≥ 0).
public struct Pong: FramePayload, Equatable {
    public static let frameType = "PONG"
    /// The PING's own timestamp (the server's time when it had none).
    public var timestamp: Int64
    public var serverTime: Int64
    public var latency: Int64

    public init(sent: Int64, now: Int64) {
        self.timestamp = sent
        self.serverTime = now
        self.latency = max(0, now - sent)
    }
}

/// USER_NOTIFICATION: a notice for one user or, on the system channel, for everyone.
public struct UserNotification: FramePayload, Equatable {
    public static let frameType = FrameType.userNotification
    /// info, warning, error or success.
    public var type: String
    public var title: String
    public var message: String
    public var persistent: Bool
    /// The user who sent it.
    public var from: String
    /// A BlueV broadcast: the JSON that was posted, which BlueV sockets get as it is.
    public var broadcast: JSONValue?

    public init(
        type: String, title: String, message: String, persistent: Bool, from: String, broadcast: JSONValue? = nil
    ) {
        self.type = type
        self.title = title
        self.message = message
        self.persistent = persistent
        self.from = from
        self.broadcast = broadcast
    }

    enum CodingKeys: String, CodingKey {
        case type, title, message, persistent, from, broadcast
    }

    /// The key `broadcast` travels under, for a reader of the frame's untyped data.
    public static let broadcastField = CodingKeys.broadcast.rawValue
}

/// ROLE_STATUS_SNAPSHOT: every role's state when a client joins a conversation.
public struct RoleStatusSnapshot: FramePayload, Equatable {
    public static let frameType = FrameType.roleStatusSnapshot

    public struct Role: Codable, Sendable, Equatable {
        public var role: String
        public var status: String
        /// The team card's; absent for a role the card does not list.
        public var responsibility: String?

        public init(role: String, status: String, responsibility: String? = nil) {
            self.role = role
            self.status = status
            self.responsibility = responsibility
        }
    }

    public var conversationId: String
    public var roles: [Role]
    /// The team's name; absent before an orchestrator has announced its team.
    public var team: String?

    public init(conversationId: String, roles: [Role], team: String? = nil) {
        self.conversationId = conversationId
        self.roles = roles
        self.team = team
    }
}

/// A stored message as the chat centre shows it (CONVERSATION_HISTORY, `/api/v1/conversations/{id}/messages`).
public struct StoredMessage: Codable, Sendable, Equatable {
    public var id: String
    public var conversationId: String
    /// "assistant" or "user".
    public var role: String
    public var author: String
    public var content: String
    @ExplicitNull public var status: String?
    @ExplicitNull public var runId: String?
    /// The stored JSON, `null` when there is none.
    public var usage: JSONValue
    public var extra: JSONValue
    /// Epoch milliseconds.
    public var createdAt: Int64

    public init(
        id: String, conversationId: String, role: String, author: String, content: String, status: String?,
        runId: String?, usage: JSONValue, extra: JSONValue, createdAt: Int64
    ) {
        self.id = id
        self.conversationId = conversationId
        self.role = role
        self.author = author
        self.content = content
        self.status = status
        self.runId = runId
        self.usage = usage
        self.extra = extra
        self.createdAt = createdAt
    }
}

/// CONVERSATION_HISTORY: the newest stored messages, oldest first, answering SUBSCRIBE_CONVERSATION with
/// `includeHistory`.
public struct ConversationHistory: FramePayload, Equatable {
    public static let frameType = "CONVERSATION_HISTORY"
    public var conversationId: String
    public var messages: [StoredMessage]
    public var hasMore: Bool
    @ExplicitNull public var nextCursor: String?

    public init(conversationId: String, messages: [StoredMessage], hasMore: Bool, nextCursor: String?) {
        self.conversationId = conversationId
        self.messages = messages
        self.hasMore = hasMore
        self.nextCursor = nextCursor
    }
}

// MARK: ACK data

/// An ACK's data for a command on one conversation (UNSUBSCRIBE_CONVERSATION, TYPING_*).
public struct ConversationAck: Codable, Sendable, Equatable {
    public var conversationId: String

    public init(conversationId: String) {
        self.conversationId = conversationId
    }
}

/// SUBSCRIBE_CONVERSATION's ACK: whether missed events follow, and the position they follow from.
public struct SubscriptionAck: Codable, Sendable, Equatable {
    public var conversationId: String
    public var recovered: Bool
    public var offset: Int64?
    public var epoch: String?

    public init(conversationId: String, recovered: Bool, position: StreamPosition?) {
        self.conversationId = conversationId
        self.recovered = recovered
        self.offset = position?.offset
        self.epoch = position?.epoch
    }
}

/// SEND_MESSAGE's ACK: the id the message is stored and answered under.
public struct MessageAck: Codable, Sendable, Equatable {
    public var messageId: String
    public var conversationId: String

    public init(messageId: String, conversationId: String) {
        self.messageId = messageId
        self.conversationId = conversationId
    }
}

/// INTERRUPT's ACK: the run is being stopped.
public struct InterruptAck: Codable, Sendable, Equatable {
    public var conversationId: String
    /// Always "stopping".
    public var status = "stopping"

    public init(conversationId: String) {
        self.conversationId = conversationId
    }
}

/// REQUEST_ROLE_FOCUS's ACK: the role leads the conversation's next run.
public struct RoleFocusAck: Codable, Sendable, Equatable {
    public var conversationId: String
    public var role: String
    /// Always "focused".
    public var status = "focused"

    public init(conversationId: String, role: String) {
        self.conversationId = conversationId
        self.role = role
    }
}

extension ServerFrame {
    /// A frame of the payload's type.
    public init(correlationId: String? = nil, payload: some FramePayload, channel: String? = nil) throws {
        self.init(correlationId: correlationId, type: payload.frameType, data: try payload.data(), channel: channel)
    }

    /// An ACK whose data is `payload`.
    public static func ack(_ commandID: String, _ payload: some Encodable) throws -> ServerFrame {
        .ack(commandID, data: try JSONValueEncoder().encode(payload))
    }
}

extension ClientEvent {
    /// An event whose payload travels under more than one frame type (presence, typing).
    public init(channel: Channel, frameType: String, fields: some Encodable, ephemeral: Bool = false) throws {
        self.init(
            channel: channel, frameType: frameType, data: try JSONValueEncoder().encode(fields), ephemeral: ephemeral)
    }
}
