import Foundation
import SwitchboardContracts
import SwitchboardStore

// The bodies of the history routes in each dialect: the chat centre's camelCase and Bisheng's
// snake_case (seed 002). Fields the clients read as "present but empty" are sent as null.

// MARK: Chat centre

/// A conversation as `/api/v1/conversations…` shows it.
struct CentreConversation: Encodable, Equatable {
    var id: String
    @ExplicitNull var title: String?
    var type: String
    var state: String
    var messageCount: Int
    /// Epoch milliseconds.
    var createdAt: Int64
    var updatedAt: Int64

    init(_ session: SessionRecord) {
        id = session.chatId
        title = session.topic
        type = session.chatType
        state = session.state
        messageCount = session.messageCount
        createdAt = session.createdAt / 1000
        updatedAt = session.updatedAt / 1000
    }
}

extension StoredMessage {
    init(_ message: MessageRecord) {
        self.init(
            id: message.id, conversationId: message.chatId, role: message.isBot ? "assistant" : "user",
            author: message.author, content: message.content, status: message.status, runId: message.runId,
            usage: HistoryRoutes.object(message.usage), extra: HistoryRoutes.object(message.extra),
            createdAt: message.createdAt / 1000)
    }
}

/// `GET /api/v1/conversations`.
struct CentreConversationPage: Encodable, Equatable {
    var conversations: [CentreConversation]
    @ExplicitNull var nextCursor: String?
    var hasMore: Bool
}

/// `GET /api/v1/conversations/{id}/messages`, newest first.
struct CentreMessagePage: Encodable, Equatable {
    var messages: [StoredMessage]
    @ExplicitNull var nextCursor: String?
    var hasMore: Bool
}

/// The chat centre's error body: `{"error": {code, message}}`.

// MARK: Bisheng (seed 002)

/// A session as Bisheng's `/chat/session…` shows it: the chat id under three names.
struct BishengSession: Encodable, Equatable {
    var id: String
    var sessionID: String
    var chatID: String
    var userID: String
    @ExplicitNull var flowID: String?
    var chatType: String
    @ExplicitNull var topic: String?
    @ExplicitNull var logo: String?
    var state: String
    var messageCount: Int
    /// ISO 8601.
    var createTime: String
    var updateTime: String

    init(_ session: SessionRecord) {
        id = session.chatId
        sessionID = session.chatId
        chatID = session.chatId
        userID = session.userId
        flowID = session.flowId
        chatType = session.chatType
        topic = session.topic
        logo = session.logo
        state = session.state
        messageCount = session.messageCount
        createTime = HistoryRoutes.iso(session.createdAt)
        updateTime = HistoryRoutes.iso(session.updatedAt)
    }

    enum CodingKeys: String, CodingKey {
        case id, sessionID = "session_id", chatID = "chat_id", userID = "user_id", flowID = "flow_id",
            chatType = "chat_type", topic, logo, state, messageCount = "message_count", createTime = "create_time",
            updateTime = "update_time"
    }
}

/// A message as Bisheng's `/chat/message/history` shows it.
struct BishengMessage: Encodable, Equatable {
    var id: String
    var chatID: String
    @ExplicitNull var flowID: String?
    var chatType: String
    @ExplicitNull var userID: String?
    var isBot: Bool
    var sender: String
    var message: String
    /// The seed types extra as Optional[str]: the JSON text, not an object.
    var extra: String
    var source: Int
    @ExplicitNull var status: String?
    /// The stored JSON, `null` when there is none.
    var usage: JSONValue
    /// ISO 8601.
    var createTime: String

    init(_ message: MessageRecord) {
        id = message.id
        chatID = message.chatId
        flowID = message.flowId
        chatType = message.chatType
        userID = message.userId
        isBot = message.isBot
        sender = message.author
        self.message = message.content
        extra = message.extra
        source = message.source
        status = message.status
        usage = HistoryRoutes.object(message.usage)
        createTime = HistoryRoutes.iso(message.createdAt)
    }

    enum CodingKeys: String, CodingKey {
        case id, chatID = "chat_id", flowID = "flow_id", chatType = "chat_type", userID = "user_id",
            isBot = "is_bot", sender, message, extra, source, status, usage, createTime = "create_time"
    }
}

/// A page of Bisheng's lists (`/chat/session/list`, `/chat/message/history`).
struct BishengPage<Item: Encodable & Equatable>: Encodable, Equatable {
    var list: [Item]
    @ExplicitNull var nextCursor: String?
    var hasMore: Bool

    enum CodingKeys: String, CodingKey {
        case list, nextCursor = "next_cursor", hasMore = "has_more"
    }
}

/// `DELETE /chat/session/{id}`.
struct BishengSessionDeleted: Encodable, Equatable {
    var sessionID: String
    var deleted = true

    enum CodingKeys: String, CodingKey {
        case sessionID = "session_id", deleted
    }
}

/// `DELETE /chat/message/delete`.
struct BishengMessageDeleted: Encodable, Equatable {
    var messageID: String
    var deleted = true

    enum CodingKeys: String, CodingKey {
        case messageID = "message_id", deleted
    }
}

/// `GET /chat/statistics`.
struct BishengStatistics: Encodable, Equatable {
    var sessionCount: Int
    var messageCount: Int
    var userMessageCount: Int
    var botMessageCount: Int
    var sessionsByType: [String: Int]

    enum CodingKeys: String, CodingKey {
        case sessionCount = "session_count", messageCount = "message_count", userMessageCount = "user_message_count",
            botMessageCount = "bot_message_count", sessionsByType = "sessions_by_type"
    }
}

/// `GET /chat/messages/count`, for one chat or all the user's.
struct BishengMessageCount: Encodable, Equatable {
    var count: Int
    var chatID: String?

    enum CodingKeys: String, CodingKey {
        case count, chatID = "chat_id"
    }
}
