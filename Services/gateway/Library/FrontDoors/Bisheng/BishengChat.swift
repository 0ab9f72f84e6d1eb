import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardStore

/// Seed 002's limits for Bisheng's chat WebSocket.
public struct BishengChatSettings: Sendable, Equatable {
    /// max_message_length, characters.
    public var maxMessageLength = 10_000
    /// heartbeat_interval: the server's WebSocket pings (shared with /ws, see `GatewaySettings.pingInterval`).
    public var heartbeatInterval: Duration = .seconds(30)
    /// connection_timeout: a connection that sends nothing for this long is closed.
    public var connectionTimeout: Duration = .seconds(300)
    /// max_concurrent_sessions: open chat sockets, counted over every gateway (a pool in the routing tables).
    public var maxConcurrentSessions = 1000

    public init() {}

    /// `SWITCHBOARD_GATEWAY_CHAT_CONNECTION_TIMEOUT_SECONDS`, `SWITCHBOARD_GATEWAY_CHAT_MAX_SESSIONS`.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws
        -> Self
    {
        var settings = Self()
        let timeout = try setting(
            Double?.none, environment: "GATEWAY_CHAT_CONNECTION_TIMEOUT_SECONDS", default: 300.0,
            environment: environment)
        settings.maxConcurrentSessions = try setting(
            Int?.none, environment: "GATEWAY_CHAT_MAX_SESSIONS", default: settings.maxConcurrentSessions,
            environment: environment)
        guard timeout > 0, settings.maxConcurrentSessions > 0 else {
            throw ConfigurationError("the chat connection timeout and session limit must be positive")
        }
        settings.connectionTimeout = .milliseconds(Int64(timeout * 1000))
        return settings
    }
}

/// `ws://HOST/chat/{flow_id}?chat_id=…` (seed 002), over the same delivery as /ws: the session's
/// conversation channel, translated to Bisheng's frames. The session and its life-cycle state live in
/// PostgreSQL, so a reconnect (to any gateway) finds them again.
struct BishengChat: WebSocketDoor {
    let context: ServiceContext
    let admission: Admission
    let hub: DeliveryHub
    let access: ConversationAccess
    let history: ChannelHistory
    let store: HistoryStore
    let settings: GatewaySettings

    /// Bisheng chat sockets of every gateway count against max_concurrent_sessions together.
    static let pool = "bisheng-chat"

    var pathPattern: String { "/chat/{flow_id}" }

    func admit(_ request: UpgradeRequest) async throws -> any WebSocketDoorSession {
        let claims = try await admission.authenticate(token: request.bearerToken)
        try admission.checkAcceptingConnections()
        let (flowID, chatID) = try target(request)
        let chatType = request.query["chat_type"] ?? ChatType.normal.rawValue
        return StreamingDoorSession(expiresAt: claims.expiresAt) { messages, socket in
            await serve(
                claims: claims, flowID: flowID, chatID: chatID, chatType: chatType, inbound: messages, outbound: socket)
        }
    }

    /// The flow and chat ids of the request, validated.
    func target(_ request: UpgradeRequest) throws -> (flowID: String, chatID: String) {
        guard let flowID = request.parameters["flow_id"], CommandHandler.isValidID(flowID) else {
            throw HTTPError(.badRequest, message: "a flow id is 1-128 letters, digits, '-', '_' or '.'")
        }
        guard let chatID = request.query["chat_id"], CommandHandler.isValidID(chatID) else {
            throw HTTPError(.badRequest, message: "chat_id is required: 1-128 letters, digits, '-', '_' or '.'")
        }
        return (flowID, chatID)
    }

    func serve(
        claims: SwitchboardClaims, flowID: String, chatID: String, chatType: String,
        inbound: AsyncStream<WebSocketMessage>,
        outbound: WebSocketOutbound
    ) async {
        func refuse(_ code: String, _ message: String, close: CloseCode) {
            outbound.enqueue(BishengFrames.error(code: code, message: message, traceID: nil))
            outbound.close(close, reason: message)
        }
        // The session: created on first use (its owner is this user), restored on a reconnect.
        let record: SessionRecord
        do {
            guard try await access.authorize(userID: claims.userID, conversationID: chatID) else {
                throw StoreError(.forbidden, "session \(chatID) belongs to another user")
            }
            record = try await store.createSession(
                NewSession(chatId: chatID, userId: claims.userID, flowId: flowID, chatType: chatType))
        } catch let error as StoreError where error.code == .forbidden {
            refuse(ErrorCode.permissionDenied.rawValue, error.message, close: .permissionDenied)
            return
        } catch let error as StoreError where error.code == .invalidArgument {
            refuse(ErrorCode.invalidArgument.rawValue, error.message, close: .badRequest)
            return
        } catch {
            refuse(ErrorCode.unavailable.rawValue, "sessions unavailable; retry", close: .serverError)
            return
        }
        // What this chat's sockets were last shown, so a reconnect replays what came while away.
        let positions = BishengPositions(redis: context.redis, history: history)
        let shown = LastPosition()
        let session = ClientSession(
            userID: claims.userID, socket: outbound,
            format: .custom { message in
                if !message.isEphemeral { shown.record(message.position) }
                return BishengFrames.translate(message)
            })
        let limit = settings.chat.maxConcurrentSessions
        do {
            try await admission.admit(session, pool: Self.pool, limit: limit)
        } catch {
            let code = error.closeCode == .connectionLimit ? "TOO_MANY_SESSIONS" : ErrorCode.unavailable.rawValue
            refuse(code, error.message, close: error.closeCode)
            return
        }
        var logger = context.logger
        logger[metadataKey: "ws.connection_id"] = "\(session.id)"
        logger[metadataKey: "chat.id"] = "\(chatID)"
        let connectionLogger = logger
        do {
            let since = try await positions.resumePosition(user: claims.userID, chatID: chatID)
            let opened = try await session.follow(
                .conversation(chatID), since: since, hub: hub, history: history,
                announce: { recovered, _ in
                    let start = BishengFrames.Start(
                        chatID: chatID, flowID: flowID, session: record, replayed: since != nil ? recovered : nil)
                    session.outbound.enqueue(BishengFrames.json(type: "start", data: start, traceID: nil))
                })
            shown.start(at: opened.position)
        } catch {
            refuse(ErrorCode.unavailable.rawValue, "the event stream is unavailable; retry", close: .serverError)
            await admission.release(session, pool: Self.pool)
            return
        }
        let lastActivity = SharedInt(Int(Clock.epochMilliseconds()))
        await withThrowingTaskGroup(of: Void.self) { group in
            // connection_timeout: silence from the client for that long ends the connection.
            let timeout = settings.chat.connectionTimeout
            let refreshEvery = Duration.seconds(max(1, settings.routingTTLSeconds / 3))
            group.addTask {
                var refreshed = ContinuousClock.now
                while !Task.isCancelled {
                    if ContinuousClock.now - refreshed >= refreshEvery {
                        await admission.refresh(session, pool: Self.pool, limit: limit)
                        refreshed = .now
                    }
                    let idle = Duration.milliseconds(
                        Clock.epochMilliseconds() - Int64(lastActivity.value.load(ordering: .relaxed)))
                    if idle >= timeout {
                        session.outbound.enqueue(
                            BishengFrames.error(
                                code: "CONNECTION_TIMEOUT",
                                message: "nothing received for \(timeout); reconnect to go on",
                                traceID: nil))
                        session.outbound.close(.idleTimeout, reason: "connection timeout")
                        return
                    }
                    try await Task.sleep(for: min(timeout - idle, .seconds(1)))
                }
            }
            for await message in inbound {
                lastActivity.value.store(Int(Clock.epochMilliseconds()), ordering: .relaxed)
                // Ended by the client: the `end` answer and the close frame are queued already.
                if await handle(message, chatID: chatID, session: session) { break }
            }
            connectionLogger.debug("chat client gone")
            group.cancelAll()
        }
        await session.unfollowAll()
        await positions.save(shown.position, user: claims.userID, chatID: chatID)
        await admission.release(session, pool: Self.pool)
    }

    /// One client frame; true when the client ended the session.
    func handle(_ message: WebSocketMessage, chatID: String, session: ClientSession) async -> Bool {
        guard case .text(let text) = message,
            let frame = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)),
            let type = frame["type"]?.stringValue
        else {
            session.outbound.enqueue(
                BishengFrames.error(
                    code: ErrorCode.badFrame.rawValue, message: "a frame is JSON {type, data, trace_id}", traceID: nil))
            return false
        }
        let traceID = frame["trace_id"]?.stringValue
        let data = frame["data"] ?? .object([:])
        do {
            if type == "message" || type == "interrupt", try await !admission.allowRequest(userID: session.userID) {
                throw CommandError(
                    .rateLimited, "more than \(Int(settings.commandsPerSecond)) requests per second; slow down")
            }
            switch type {
            case "message":
                guard let content = (data["content"] ?? data["message"] ?? data["input"])?.stringValue,
                    !content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
                else {
                    throw CommandError(.invalidArgument, "data.content must be a non-empty string")
                }
                guard content.count <= settings.chat.maxMessageLength else {
                    throw CommandError(
                        .contentTooLong,
                        "the message is \(content.count) characters; the limit is \(settings.chat.maxMessageLength)")
                }
                let messageID = try await MessageSubmitter(context: context).submit(
                    userID: session.userID, conversationID: chatID, content: content,
                    clientMessageID: traceID ?? UUID().uuidString.lowercased(), pattern: data["pattern"]?.stringValue)
                session.outbound.enqueue(
                    BishengFrames.json(
                        type: "progress",
                        data: BishengFrames.Progress(stage: "accepted", messageID: messageID, chatID: chatID),
                        traceID: traceID ?? messageID))
            case "interrupt":
                try await MessageSubmitter(context: context).interrupt(
                    userID: session.userID, conversationID: chatID, requestID: traceID ?? UUID().uuidString.lowercased()
                )
                session.outbound.enqueue(
                    BishengFrames.json(
                        type: "interrupt", data: BishengFrames.ChatStatus(chatID: chatID, status: "stopping"),
                        traceID: traceID))
            case "end":
                _ = try await store.updateSession(chatID, user: session.userID, changes: SessionChanges(state: .ended))
                session.outbound.enqueue(
                    BishengFrames.json(
                        type: "end", data: BishengFrames.ChatState(chatID: chatID, state: SessionState.ended.rawValue),
                        traceID: traceID))
                session.outbound.close(.sessionEnded, reason: "session ended")
                return true
            case "ping", "heartbeat":
                session.outbound.enqueue(
                    BishengFrames.json(type: "progress", data: BishengFrames.Progress(stage: "pong"), traceID: traceID))
            default:
                throw CommandError(.unknownType, "unknown type \(type); send message, interrupt or end")
            }
        } catch let error as CommandError {
            session.outbound.enqueue(
                BishengFrames.error(code: error.code.rawValue, message: error.message, traceID: traceID))
        } catch {
            context.logger.warning("chat frame failed", metadata: ["chat.id": "\(chatID)", "error": "\(error)"])
            session.outbound.enqueue(
                BishengFrames.error(
                    code: ErrorCode.unavailable.rawValue, message: "could not be completed; retry", traceID: traceID))
        }
        return false
    }
}

/// An atomic integer that escaping closures and copyable structs can share.
final class SharedInt: Sendable {
    let value: Atomic<Int>

    init(_ initial: Int) { value = Atomic(initial) }
}

/// Where a chat's sockets left off (`Keyspace.User.bishengSeen`): the last event a socket of
/// the chat was shown, or "start" when the chat had none yet. The next socket of the chat follows
/// from there, so a client that reconnects (to any gateway) gets what came while it was away.
struct BishengPositions: Sendable {
    let redis: RedisClient
    let history: ChannelHistory
    /// As long as the channel's history is kept after its last event.
    static let ttlSeconds = 3600
    static let fromStart = "start"

    func resumePosition(user: String, chatID: String) async throws -> StreamPosition? {
        guard
            let saved = try await redis.send("GET", RedisArgument(Keyspace.User.bishengSeen(user, chatID: chatID)))
                .string
        else { return nil }
        if saved == Self.fromStart {
            // The chat had no event when its socket left: everything it has now is new to the client.
            return try await history.read(.conversation(chatID), after: nil).top.map {
                StreamPosition(epoch: $0.epoch, offset: 0)
            }
        }
        return StreamPosition(lastEventID: saved)
    }

    func save(_ position: StreamPosition?, user: String, chatID: String) async {
        let value = position.map { "\($0.epoch):\($0.offset)" } ?? Self.fromStart
        _ = try? await redis.send(
            "SET", RedisArgument(Keyspace.User.bishengSeen(user, chatID: chatID)), RedisArgument(value), "EX",
            RedisArgument(Self.ttlSeconds))
    }
}

/// The position of the last event shown on one socket.
final class LastPosition: Sendable {
    private let value = Mutex<StreamPosition?>(nil)

    var position: StreamPosition? { value.withLock { $0 } }

    func record(_ position: StreamPosition) { value.withLock { $0 = position } }

    /// Where the socket began, unless an event was shown already.
    func start(at position: StreamPosition?) {
        value.withLock { if $0 == nil { $0 = position } }
    }
}

/// Bisheng's REST envelope, for every answer of its routes: `{status_code, status_message, data}`,
/// `status_code` 200 and "SUCCESS" on success; an error's `status_code` is its HTTP status, with
/// Switchboard's `code` beside it.
enum BishengEnvelope {
    struct Body<Payload: Encodable>: Encodable {
        var status_code: Int
        var status_message: String
        var data: Payload
        var code: String?
    }

    static func success(_ data: some Encodable) throws -> Response {
        try Response.json(Body(status_code: 200, status_message: "SUCCESS", data: data), status: .ok)
    }

    static func failure(_ status: HTTPResponse.Status, code: String, message: String) throws -> Response {
        try Response.json(
            Body(status_code: status.code, status_message: message, data: JSONValue.null, code: code), status: status)
    }
}

extension BishengChat {
    func addRoutes(to router: Router<GatewayRequestContext>) {
        // Stops the chat's run (idempotent; a disconnect is not a stop), once Kafka has the request.
        router.post("/chat/interrupt") { request, requestContext -> Response in
            struct Body: Decodable {
                var chat_id: String?
                var flow_id: String?
                /// The chat centre's name for the chat id, still accepted.
                var conversationId: String?
            }
            struct Answer: Encodable {
                var chat_id: String
                var flow_id: String?
                var status = "stopping"
            }
            do {
                let claims = try await Gateway.authenticate(request, authority: admission.authority)
                try await admission.checkRequest(userID: claims.userID)
                guard let body = try? await request.decode(as: Body.self, context: requestContext),
                    let chatID = body.chat_id ?? body.conversationId
                else {
                    return try BishengEnvelope.failure(
                        .badRequest, code: ErrorCode.badFrame.rawValue,
                        message: #"the body is JSON {"chat_id": "…", "flow_id"?: "…"}"#)
                }
                guard CommandHandler.isValidID(chatID) else {
                    return try BishengEnvelope.failure(
                        .badRequest, code: ErrorCode.invalidArgument.rawValue,
                        message: "a chat id is 1-128 letters, digits, '-', '_' or '.'")
                }
                guard try await access.authorize(userID: claims.userID, conversationID: chatID) else {
                    return try BishengEnvelope.failure(
                        .forbidden, code: ErrorCode.permissionDenied.rawValue,
                        message: "chat \(chatID) belongs to another user")
                }
                try await MessageSubmitter(context: context).interrupt(
                    userID: claims.userID, conversationID: chatID, requestID: UUID().uuidString.lowercased())
                return try BishengEnvelope.success(Answer(chat_id: chatID, flow_id: body.flow_id))
            } catch let error as HTTPError {
                return try BishengEnvelope.failure(
                    error.status, code: "HTTP_\(error.status.code)", message: error.body ?? "\(error.status)")
            } catch {
                context.logger.warning("interrupt failed", metadata: ["error": "\(error)"])
                return try BishengEnvelope.failure(
                    .serviceUnavailable, code: ErrorCode.unavailable.rawValue, message: "could not be completed; retry")
            }
        }
    }
}
