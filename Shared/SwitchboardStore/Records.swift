import Foundation

/// Seed 002's chat types.
public enum ChatType: String, Codable, Sendable, CaseIterable {
    case normal = "NORMAL"
    case workflow = "WORKFLOW"
    case assistant = "ASSISTANT"
    case linsight = "LINSIGHT"
}

/// Seed 002's session life cycle: 初始化 → 进行中 → 等待输入 ↔ 进行中 → 已完成 → 已结束, and 已中断.
public enum SessionState: String, Codable, Sendable, CaseIterable {
    case initialised, inProgress = "in_progress", waitingForInput = "waiting_for_input", completed, interrupted, ended
}

/// A conversation (seed 002's Session). `chatId` is the conversation id of the chat centre.
public struct SessionRecord: Codable, Sendable, Equatable {
    public var chatId: String
    public var userId: String
    public var flowId: String?
    public var chatType: String
    public var topic: String?
    public var logo: String?
    public var state: String
    public var messageCount: Int
    /// Microseconds since the Unix epoch.
    public var createdAt: Int64
    public var updatedAt: Int64

    public init(
        chatId: String, userId: String, flowId: String? = nil, chatType: String = ChatType.normal.rawValue,
        topic: String? = nil, logo: String? = nil, state: String = SessionState.initialised.rawValue,
        messageCount: Int = 0,
        createdAt: Int64, updatedAt: Int64
    ) {
        self.chatId = chatId
        self.userId = userId
        self.flowId = flowId
        self.chatType = chatType
        self.topic = topic
        self.logo = logo
        self.state = state
        self.messageCount = messageCount
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// One message of a conversation (seed 002's Message), the user's or an assistant's reply.
public struct MessageRecord: Codable, Sendable, Equatable {
    public var seq: Int64
    public var id: String
    public var chatId: String
    public var flowId: String?
    public var chatType: String
    public var userId: String?
    public var isBot: Bool
    /// The user's id, or the role that wrote the reply.
    public var author: String
    public var content: String
    /// JSON object text.
    public var extra: String
    public var source: Int
    public var runId: String?
    /// Replies only: completed, stopped or failed.
    public var status: String?
    /// Replies only: JSON object text (chunks, durationMs, engine).
    public var usage: String?
    public var createdAt: Int64

    public init(
        seq: Int64, id: String, chatId: String, flowId: String?, chatType: String, userId: String?, isBot: Bool,
        author: String,
        content: String, extra: String, source: Int, runId: String?, status: String?, usage: String?, createdAt: Int64
    ) {
        self.seq = seq
        self.id = id
        self.chatId = chatId
        self.flowId = flowId
        self.chatType = chatType
        self.userId = userId
        self.isBot = isBot
        self.author = author
        self.content = content
        self.extra = extra
        self.source = source
        self.runId = runId
        self.status = status
        self.usage = usage
        self.createdAt = createdAt
    }
}

/// One step of an assistant turn, in order: its start, each role's text, role status changes, tool
/// calls, errors, its end.
public struct TurnPart: Codable, Sendable, Equatable {
    public var id: String
    public var chatId: String
    public var runId: String?
    public var messageId: String?
    public var kind: String
    public var role: String?
    public var content: String?
    /// JSON text of the event's data.
    public var data: String
    public var createdAt: Int64
}

/// How a run ended (COLLABORATION_COMPLETE): completed, partial, failed, stopped or abandoned.
public struct TurnRecord: Codable, Sendable, Equatable {
    public var runId: String
    public var chatId: String
    public var messageId: String?
    public var status: String
    public var pattern: String?
    public var answer: String?
    public var failedRoles: String
    public var usage: String
    public var finishedAt: Int64
}

public struct Page<Item: Sendable>: Sendable {
    public var items: [Item]
    /// Pass back to get the next page; nil when there is none.
    public var nextCursor: String?
    public var hasMore: Bool { nextCursor != nil }

    public init(items: [Item], nextCursor: String?) {
        self.items = items
        self.nextCursor = nextCursor
    }
}

/// Opaque keyset cursors: the sort value and a tie-breaker of the last item returned, base64url.
public struct Cursor: Sendable, Equatable {
    public var value: Int64
    public var tieBreaker: String

    public init(value: Int64, tieBreaker: String) {
        self.value = value
        self.tieBreaker = tieBreaker
    }

    public var encoded: String {
        Data("\(value):\(tieBreaker)".utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public init(encoded: String) throws(StoreError) {
        var base64 = encoded.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64), let text = String(data: data, encoding: .utf8),
            let colon = text.firstIndex(of: ":"), let value = Int64(text[..<colon])
        else {
            throw StoreError(.invalidArgument, "cursor is not one this server made")
        }
        self.init(value: value, tieBreaker: String(text[text.index(after: colon)...]))
    }
}

/// Which sessions to list and how.
public struct SessionQuery: Sendable, Equatable {
    public enum Sort: String, Sendable, CaseIterable { case created, updated }

    public var sort: Sort = .updated
    public var limit: Int = 20
    public var cursor: Cursor?
    public var chatType: String?
    /// Sessions created at or after / before these times (µs).
    public var createdFrom: Int64?
    public var createdUntil: Int64?

    public init() {}

    public static let maximumLimit = 100

    /// Clamps nothing silently: a bad limit is the caller's error.
    public func validated() throws(StoreError) -> SessionQuery {
        guard (1...Self.maximumLimit).contains(limit) else {
            throw StoreError(.invalidArgument, "limit must be 1…\(Self.maximumLimit), got \(limit)")
        }
        if let chatType, ChatType(rawValue: chatType) == nil {
            throw StoreError(
                .invalidArgument,
                "chat type must be one of \(ChatType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return self
    }
}

/// A session made by a client (Bisheng's POST /chat/session/create) rather than by its first message.
public struct NewSession: Sendable, Equatable {
    public var chatId: String
    public var userId: String
    public var flowId: String?
    public var chatType: String = ChatType.normal.rawValue
    public var topic: String?
    public var logo: String?

    public init(
        chatId: String, userId: String, flowId: String? = nil, chatType: String = ChatType.normal.rawValue,
        topic: String? = nil, logo: String? = nil
    ) {
        self.chatId = chatId
        self.userId = userId
        self.flowId = flowId
        self.chatType = chatType
        self.topic = topic
        self.logo = logo
    }

    public func validated() throws(StoreError) -> NewSession {
        guard !chatId.isEmpty, chatId.count <= 200 else {
            throw StoreError(.invalidArgument, "chat id must be 1…200 characters")
        }
        guard ChatType(rawValue: chatType) != nil else {
            throw StoreError(
                .invalidArgument,
                "chat type must be one of \(ChatType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        try SessionChanges(topic: topic, logo: logo).validate()
        return self
    }
}

/// A rename (topic), a new logo, or a life-cycle step.
public struct SessionChanges: Sendable, Equatable {
    public var topic: String?
    public var logo: String?
    public var state: SessionState?

    public init(topic: String? = nil, logo: String? = nil, state: SessionState? = nil) {
        self.topic = topic
        self.logo = logo
        self.state = state
    }

    public func validate() throws(StoreError) {
        if let topic, topic.count > 200 { throw StoreError(.invalidArgument, "topic is longer than 200 characters") }
        if let logo, logo.count > 500 { throw StoreError(.invalidArgument, "logo is longer than 500 characters") }
    }
}
