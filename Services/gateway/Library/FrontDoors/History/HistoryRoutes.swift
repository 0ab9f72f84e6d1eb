import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardStore

/// Durable history over REST: the chat centre's conversations (`/api/v1/conversations…`, camelCase)
/// and Bisheng's chat module (`/chat/session…`, `/chat/message…`, seed 002, snake_case inside
/// Bisheng's `{status_code, status_message, data}`, see BishengEnvelope). Every call is the token's user's: a session of
/// someone else is 403, a missing one 404. Errors carry a code (docs/history.md).
struct HistoryRoutes: Sendable {
    let store: HistoryStore
    let authority: TokenAuthority
    let access: ConversationAccess

    func addRoutes(to router: Router<GatewayRequestContext>) {
        addConversationRoutes(to: router)
        addBishengRoutes(to: router)
    }

    // MARK: Chat centre

    func addConversationRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/api/v1/conversations") { request, _ in
            try await respond(.centre) {
                let user = try await userID(request)
                var query = SessionQuery()
                query.limit = try intParameter(request, "limit") ?? 20
                query.cursor = try cursorParameter(request, "cursor")
                if let sort = request.uri.queryParameters["sort"].map(String.init) {
                    guard let value = SessionQuery.Sort(rawValue: sort) else {
                        throw APIError(.badRequest, "INVALID_ARGUMENT", "sort is created or updated")
                    }
                    query.sort = value
                }
                let page = try await store.listSessions(user: user, query: query)
                return CentreConversationPage(
                    conversations: page.items.map(CentreConversation.init), nextCursor: page.nextCursor,
                    hasMore: page.hasMore)
            }
        }
        // Creates an empty conversation (the console's "new"); a first message creates one too.
        router.post("/api/v1/conversations") { request, context in
            try await respond(.centre, status: .created) {
                struct Body: Decodable {
                    var id: String?
                    var title: String?
                }
                let user = try await userID(request)
                let body = try await request.decodeJSON(
                    Body.self, context: context, shape: #"{"id"?: "…", "title"?: "…"}"#)
                let chatID = body.id ?? "conv-\(UUID().uuidString.prefix(13).lowercased())"
                guard CommandHandler.isValidID(chatID) else {
                    throw APIError(.badRequest, "INVALID_ARGUMENT", "an id is 1-128 letters, digits, '-', '_' or '.'")
                }
                // The live path's ownership (Redis) and the history's agree: claim it there too.
                guard try await access.authorize(userID: user, conversationID: chatID) else {
                    throw APIError(
                        .forbidden, ErrorCode.permissionDenied.rawValue,
                        "conversation \(chatID) belongs to another user")
                }
                return CentreConversation(
                    try await store.createSession(
                        NewSession(chatId: chatID, userId: user, chatType: ChatType.normal.rawValue, topic: body.title))
                )
            }
        }
        router.get("/api/v1/conversations/:id") { request, context in
            try await respond(.centre) {
                CentreConversation(try await store.session(try id(context, "id"), user: try await userID(request)))
            }
        }
        router.patch("/api/v1/conversations/:id") { request, context in
            try await respond(.centre) {
                struct Body: Decodable { var title: String? }
                let body = try await request.decodeJSON(Body.self, context: context, shape: #"{"title": "…"}"#)
                guard let title = body.title, !title.trimmingCharacters(in: .whitespaces).isEmpty else {
                    throw APIError(.badRequest, "INVALID_ARGUMENT", "title must not be empty")
                }
                return CentreConversation(
                    try await store.updateSession(
                        try id(context, "id"), user: try await userID(request), changes: SessionChanges(topic: title)))
            }
        }
        router.delete("/api/v1/conversations/:id") { request, context in
            try await respond(.centre, status: .noContent) {
                try await store.deleteSession(try id(context, "id"), user: try await userID(request))
                return JSONValue.null
            }
        }
        router.get("/api/v1/conversations/:id/messages") { request, context in
            try await respond(.centre) {
                let page = try await store.messages(
                    try id(context, "id"), user: try await userID(request),
                    before: try cursorParameter(request, "cursor"),
                    limit: try intParameter(request, "limit") ?? 50)
                return CentreMessagePage(
                    messages: page.items.map(StoredMessage.init), nextCursor: page.nextCursor, hasMore: page.hasMore)
            }
        }
    }

    // MARK: Bisheng (seed 002)

    func addBishengRoutes(to router: Router<GatewayRequestContext>) {
        router.post("/chat/session/create") { request, context in
            try await respond(.bisheng) {
                struct Body: Decodable {
                    var chat_id: String?
                    var flow_id: String?
                    var chat_type: String?
                    var topic: String?
                    var logo: String?
                }
                let user = try await userID(request)
                let body = try await request.decodeJSON(
                    Body.self, context: context, shape: #"{"chat_id"?, "flow_id"?, "chat_type"?, "topic"?, "logo"?}"#)
                let chatID = body.chat_id ?? UUID().uuidString.lowercased()
                guard CommandHandler.isValidID(chatID) else {
                    throw APIError(
                        .badRequest, "INVALID_ARGUMENT", "a chat id is 1-128 letters, digits, '-', '_' or '.'")
                }
                // The live path's ownership (Redis) and the history's agree: claim it there too.
                guard try await access.authorize(userID: user, conversationID: chatID) else {
                    throw APIError(.forbidden, "PERMISSION_DENIED", "session \(chatID) belongs to another user")
                }
                return BishengSession(
                    try await store.createSession(
                        NewSession(
                            chatId: chatID, userId: user, flowId: body.flow_id,
                            chatType: body.chat_type ?? ChatType.normal.rawValue,
                            topic: body.topic, logo: body.logo)))
            }
        }
        router.get("/chat/session/list") { request, _ in
            try await respond(.bisheng) {
                var query = SessionQuery()
                query.limit = try intParameter(request, "page_size") ?? 20
                query.cursor = try cursorParameter(request, "cursor")
                query.chatType = request.uri.queryParameters["chat_type"].map(String.init)
                query.createdFrom = try timeParameter(request, "start_time")
                query.createdUntil = try timeParameter(request, "end_time")
                if let sort = request.uri.queryParameters["sort"].map(String.init) {
                    guard let value = SessionQuery.Sort(rawValue: sort) else {
                        throw APIError(.badRequest, "INVALID_ARGUMENT", "sort is created or updated")
                    }
                    query.sort = value
                }
                let page = try await store.listSessions(user: try await userID(request), query: query)
                return BishengPage(
                    list: page.items.map(BishengSession.init), nextCursor: page.nextCursor, hasMore: page.hasMore)
            }
        }
        router.get("/chat/session/:session_id") { request, context in
            try await respond(.bisheng) {
                BishengSession(
                    try await store.session(try id(context, "session_id"), user: try await userID(request)))
            }
        }
        router.put("/chat/session/:session_id") { request, context in
            try await respond(.bisheng) {
                struct Body: Decodable {
                    var topic: String?
                    var logo: String?
                    var state: String?
                }
                let body = try await request.decodeJSON(
                    Body.self, context: context, shape: #"{"topic"?, "logo"?, "state"?}"#)
                var state: SessionState?
                if let value = body.state {
                    guard let parsed = SessionState(rawValue: value) else {
                        throw APIError(
                            .badRequest, "INVALID_ARGUMENT",
                            "state is one of \(SessionState.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    state = parsed
                }
                return BishengSession(
                    try await store.updateSession(
                        try id(context, "session_id"), user: try await userID(request),
                        changes: SessionChanges(topic: body.topic, logo: body.logo, state: state)))
            }
        }
        router.delete("/chat/session/:session_id") { request, context in
            try await respond(.bisheng) {
                let chatID = try id(context, "session_id")
                try await store.deleteSession(chatID, user: try await userID(request))
                return BishengSessionDeleted(sessionID: chatID)
            }
        }
        router.get("/chat/message/history") { request, _ in
            try await respond(.bisheng) {
                guard let chatID = request.uri.queryParameters["chat_id"].map(String.init),
                    CommandHandler.isValidID(chatID)
                else {
                    throw APIError(.badRequest, "INVALID_ARGUMENT", "chat_id is required")
                }
                let page = try await store.messages(
                    chatID, user: try await userID(request), before: try cursorParameter(request, "cursor"),
                    limit: try intParameter(request, "page_size") ?? 20)
                return BishengPage(
                    list: page.items.map(BishengMessage.init), nextCursor: page.nextCursor, hasMore: page.hasMore)
            }
        }
        router.delete("/chat/message/delete") { request, _ in
            try await respond(.bisheng) {
                guard let messageID = request.uri.queryParameters["message_id"].map(String.init), !messageID.isEmpty
                else {
                    throw APIError(.badRequest, "INVALID_ARGUMENT", "message_id is required")
                }
                try await store.deleteMessage(messageID, user: try await userID(request))
                return BishengMessageDeleted(messageID: messageID)
            }
        }
        router.get("/chat/statistics") { request, _ in
            try await respond(.bisheng) {
                let statistics = try await store.statistics(user: try await userID(request))
                return BishengStatistics(
                    sessionCount: statistics.sessions, messageCount: statistics.messages,
                    userMessageCount: statistics.userMessages, botMessageCount: statistics.botMessages,
                    sessionsByType: statistics.sessionsByType)
            }
        }
        router.get("/chat/messages/count") { request, _ in
            try await respond(.bisheng) {
                let chatID = request.uri.queryParameters["chat_id"].map(String.init)
                let count = try await store.messageCount(user: try await userID(request), chatId: chatID)
                return BishengMessageCount(count: count, chatID: chatID)
            }
        }
    }

    // MARK: Plumbing

    enum Dialect { case centre, bisheng }

    /// Runs `body` and renders its value or its error in the dialect's shape, errors with a code.
    func respond<Body: Encodable>(
        _ dialect: Dialect, status: HTTPResponse.Status = .ok, _ body: () async throws -> Body
    ) async throws -> Response {
        do {
            let data = try JSONValueEncoder().encode(try await body())
            if dialect == .bisheng { return try BishengEnvelope.success(data) }
            if status == .noContent { return Response(status: .noContent) }
            return try Response.json(data, status: status)
        } catch let error as APIError {
            return try Self.error(dialect, status: error.status, code: error.code, message: error.message)
        } catch let error as StoreError {
            let (status, code): (HTTPResponse.Status, String) =
                switch error.code {
                case .forbidden: (.forbidden, ErrorCode.permissionDenied.rawValue)
                case .notFound: (.notFound, "NOT_FOUND")
                case .invalidArgument: (.badRequest, ErrorCode.invalidArgument.rawValue)
                default: (.serviceUnavailable, ErrorCode.unavailable.rawValue)
                }
            return try Self.error(dialect, status: status, code: code, message: error.message)
        } catch let error as HTTPError {
            // A missing or bad token too is answered in Bisheng's envelope on its routes.
            guard dialect == .bisheng else { throw error }
            return try Self.error(
                dialect, status: error.status, code: "HTTP_\(error.status.code)",
                message: error.body ?? "\(error.status)")
        } catch {
            // PostgreSQL unreachable or failing: the caller may retry.
            return try Self.error(
                dialect, status: .serviceUnavailable, code: ErrorCode.unavailable.rawValue,
                message: "history unavailable")
        }
    }

    static func error(_ dialect: Dialect, status: HTTPResponse.Status, code: String, message: String) throws -> Response
    {
        if dialect == .bisheng { return try BishengEnvelope.failure(status, code: code, message: message) }
        return try Response.json(APIErrorBody(code: code, message: message), status: status)
    }

    func userID(_ request: Request) async throws -> String {
        try await Gateway.authenticate(request, authority: authority).userID
    }

    func id(_ context: GatewayRequestContext, _ name: String) throws -> String {
        guard let id = context.parameters.get(name), CommandHandler.isValidID(id) else {
            throw APIError(.badRequest, "INVALID_ARGUMENT", "an id is 1-128 letters, digits, '-', '_' or '.'")
        }
        return id
    }

    func intParameter(_ request: Request, _ name: String) throws -> Int? {
        guard let text = request.uri.queryParameters[Substring(name)] else { return nil }
        guard let value = Int(String(text)) else {
            throw APIError(.badRequest, "INVALID_ARGUMENT", "\(name) must be a number")
        }
        return value
    }

    func cursorParameter(_ request: Request, _ name: String) throws -> Cursor? {
        guard let text = request.uri.queryParameters[Substring(name)], !text.isEmpty else { return nil }
        return try Cursor(encoded: String(text))
    }

    /// ISO 8601 or seconds since the epoch; stored as microseconds.
    func timeParameter(_ request: Request, _ name: String) throws -> Int64? {
        guard let text = request.uri.queryParameters[Substring(name)].map(String.init), !text.isEmpty else {
            return nil
        }
        if let seconds = Double(text) { return Int64(seconds * 1_000_000) }
        if let date = try? Date(text, strategy: .iso8601) { return Int64(date.timeIntervalSince1970 * 1_000_000) }
        throw APIError(.badRequest, "INVALID_ARGUMENT", "\(name) is ISO 8601 or seconds since the epoch")
    }

    static func iso(_ micros: Int64) -> String {
        AgentEvent.isoTimestamp(Date(timeIntervalSince1970: Double(micros) / 1_000_000))
    }

    static func object(_ text: String?) -> JSONValue {
        guard let text, let value = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) else {
            return .null
        }
        return value
    }
}

extension HistoryRoutes {
    /// SUBSCRIBE_CONVERSATION with `data.includeHistory: true`: the newest `data.historyLimit` (default
    /// 50, at most 100) stored messages, oldest first, as one CONVERSATION_HISTORY frame; nil without
    /// the flag. A conversation with no stored history yet gets an empty list.
    static func subscribeHistory(_ command: ClientCommand, conversationID: String, user: String, store: HistoryStore)
        async throws
        -> ServerFrame?
    {
        guard command.data?["includeHistory"]?.boolValue == true else { return nil }
        let limit = command.data?["historyLimit"]?.intValue ?? 50
        guard (1...SessionQuery.maximumLimit).contains(limit) else {
            throw CommandError(.invalidArgument, "data.historyLimit must be 1…\(SessionQuery.maximumLimit)")
        }
        let page: Page<MessageRecord>
        do {
            page = try await store.messages(conversationID, user: user, limit: limit)
        } catch let error as StoreError where error.code == .notFound {
            page = Page(items: [], nextCursor: nil)
        } catch let error as StoreError where error.code == .forbidden {
            throw CommandError(.permissionDenied, error.message)
        }
        return try ServerFrame(
            correlationId: command.id,
            payload: ConversationHistory(
                conversationId: conversationID, messages: page.items.reversed().map(StoredMessage.init),
                hasMore: page.hasMore, nextCursor: page.nextCursor))
    }
}
