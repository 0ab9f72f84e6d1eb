import Foundation
import Hummingbird
import HummingbirdWebSocket
import Logging
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
    /// max_concurrent_sessions: open chat sockets on this gateway.
    public var maxConcurrentSessions = 1000

    public init() {}

    /// `SWITCHBOARD_GATEWAY_CHAT_CONNECTION_TIMEOUT_SECONDS`, `SWITCHBOARD_GATEWAY_CHAT_MAX_SESSIONS`.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Self {
        var settings = Self()
        let timeout = try setting(
            Double?.none, environment: "GATEWAY_CHAT_CONNECTION_TIMEOUT_SECONDS", default: 300.0, environment: environment)
        settings.maxConcurrentSessions = try setting(
            Int?.none, environment: "GATEWAY_CHAT_MAX_SESSIONS", default: settings.maxConcurrentSessions, environment: environment)
        guard timeout > 0, settings.maxConcurrentSessions > 0 else {
            throw ConfigurationError("the chat connection timeout and session limit must be positive")
        }
        settings.connectionTimeout = .milliseconds(Int64(timeout * 1000))
        return settings
    }
}

/// Bisheng's frames: `{type, data, trace_id}` with type start, message, progress, result, error,
/// end or interrupt (docs/history.md). Pure, so the wire form is tested byte for byte.
enum BishengFrames {
    static let types: Set<String> = ["start", "message", "progress", "result", "error", "end", "interrupt"]

    static func json(type: String, data: JSONValue, traceID: String?) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let frame: JSONValue = ["type": .string(type), "data": data, "trace_id": traceID.map(JSONValue.string) ?? .null]
        return (try? String(decoding: encoder.encode(frame), as: UTF8.self)) ?? #"{"type":"error"}"#
    }

    static func error(code: String, message: String, traceID: String?) -> String {
        json(type: "error", data: ["code": .string(code), "message": .string(message)], traceID: traceID)
    }

    /// A conversation event in Bisheng's terms: the reply's chunks are `message`, its end `result`,
    /// the run's end `end`, failures `error`, everything else (roles, progress) `progress` with the
    /// chat-centre type in `data.event`. The trace id is the run's (the user message's id).
    static func translate(_ message: ChannelWire.Message) -> String {
        guard let frame = try? JSONDecoder().decode(ServerFrame.self, from: Data(message.frameJSON.utf8)) else {
            return error(code: ErrorCode.internalError.rawValue, message: "unreadable event", traceID: nil)
        }
        let data = frame.data
        let runID = data["runId"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? data["inReplyTo"]?.stringValue
            ?? data["messageId"]?.stringValue.flatMap { $0.hasPrefix("reply-") ? String($0.dropFirst(6)) : nil }
        switch frame.type {
        case FrameType.messageStreamChunk:
            return json(
                type: "message",
                data: ["message_id": data["messageId"] ?? .null, "role": data["role"] ?? .null, "chunk": data["chunk"] ?? "",
                       "position": data["position"] ?? .null], traceID: runID)
        case FrameType.messageStreamEnd:
            let final = data["finalMessage"] ?? .object([:])
            return json(
                type: "result",
                data: ["message_id": data["messageId"] ?? .null, "role": final["role"] ?? .null, "content": final["content"] ?? "",
                       "status": data["metadata"]?["status"] ?? "completed"], traceID: runID)
        case FrameType.collaborationComplete:
            let result = data["result"] ?? .object([:])
            return json(
                type: "end", data: ["message_id": data["messageId"] ?? .null, "status": result["status"] ?? .null],
                traceID: runID)
        case FrameType.agentError:
            return json(
                type: "error",
                data: ["code": "AGENT_ERROR", "role": data["role"] ?? .null,
                       "message": data["payload"]?["error"] ?? data["error"] ?? "a role failed"], traceID: runID)
        case FrameType.messageRejected:
            return json(
                type: "error", data: ["code": "BUSY", "message_id": data["messageId"] ?? .null,
                                      "message": "the session is answering another message"], traceID: runID)
        default:
            var fields = data.objectValue ?? [:]
            fields["event"] = .string(frame.type)
            return json(type: "progress", data: .object(fields), traceID: runID)
        }
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
    let open = SharedInt(0)

    var pathPattern: String { "/chat/{flow_id}" }

    func admit(_ request: UpgradeRequest) async throws -> any WebSocketDoorSession {
        let claims = try await admission.authenticate(token: request.bearerToken)
        try admission.checkAcceptingConnections()
        let (flowID, chatID) = try target(request)
        let chatType = request.query["chat_type"] ?? ChatType.normal.rawValue
        return StreamingDoorSession(expiresAt: claims.expiresAt) { messages, socket in
            await serve(claims: claims, flowID: flowID, chatID: chatID, chatType: chatType, inbound: messages, outbound: socket)
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
        claims: SwitchboardClaims, flowID: String, chatID: String, chatType: String, inbound: AsyncStream<WebSocketMessage>,
        outbound: WebSocketOutbound
    ) async {
        func refuse(_ code: String, _ message: String, close: CloseCode) {
            outbound.enqueue(BishengFrames.error(code: code, message: message, traceID: nil))
            outbound.close(close, reason: message)
        }
        let count = open.value.add(1, ordering: .relaxed).newValue
        defer { open.value.subtract(1, ordering: .relaxed) }
        guard count <= settings.chat.maxConcurrentSessions else {
            refuse(
                "TOO_MANY_SESSIONS", "at most \(settings.chat.maxConcurrentSessions) concurrent chat sessions; retry later",
                close: .connectionLimit)
            return
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
        let session = ClientSession(userID: claims.userID, socket: outbound, format: .custom(BishengFrames.translate))
        do {
            try await admission.admit(session)
        } catch {
            return outbound.close(error.closeCode, reason: error.message)
        }
        var logger = context.logger
        logger[metadataKey: "ws.connection_id"] = "\(session.id)"
        logger[metadataKey: "chat.id"] = "\(chatID)"
        let connectionLogger = logger
        do {
            _ = try await session.follow(
                .conversation(chatID), since: nil, hub: hub, history: history,
                announce: { _, _ in
                    session.outbound.enqueue(
                        BishengFrames.json(
                            type: "start",
                            data: ["chat_id": .string(chatID), "flow_id": .string(flowID), "chat_type": .string(record.chatType),
                                   "state": .string(record.state), "message_count": .number(Double(record.messageCount)),
                                   "resumed": .bool(record.messageCount > 0 || record.state != SessionState.initialised.rawValue)],
                            traceID: nil))
                })
        } catch {
            refuse(ErrorCode.unavailable.rawValue, "the event stream is unavailable; retry", close: .serverError)
            await admission.release(session)
            return
        }
        let lastActivity = SharedInt(Int(Clock.epochMilliseconds()))
        await withThrowingTaskGroup(of: Void.self) { group in
            // connection_timeout: silence from the client for that long ends the connection.
            let timeout = settings.chat.connectionTimeout
            group.addTask {
                while !Task.isCancelled {
                    let idle = Duration.milliseconds(Clock.epochMilliseconds() - Int64(lastActivity.value.load(ordering: .relaxed)))
                    if idle >= timeout {
                        session.outbound.enqueue(
                            BishengFrames.error(
                                code: "CONNECTION_TIMEOUT", message: "nothing received for \(timeout); reconnect to go on",
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
        await admission.release(session)
    }

    /// One client frame; true when the client ended the session.
    func handle(_ message: WebSocketMessage, chatID: String, session: ClientSession) async -> Bool {
        guard case .text(let text) = message,
            let frame = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)), let type = frame["type"]?.stringValue
        else {
            session.outbound.enqueue(
                BishengFrames.error(code: ErrorCode.badFrame.rawValue, message: "a frame is JSON {type, data, trace_id}", traceID: nil))
            return false
        }
        let traceID = frame["trace_id"]?.stringValue
        let data = frame["data"] ?? .object([:])
        do {
            if type == "message" || type == "interrupt", try await !admission.allowRequest(userID: session.userID) {
                throw CommandError(.rateLimited, "more than \(Int(settings.commandsPerSecond)) requests per second; slow down")
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
                        .contentTooLong, "the message is \(content.count) characters; the limit is \(settings.chat.maxMessageLength)")
                }
                let messageID = try await MessageSubmitter(context: context).submit(
                    userID: session.userID, conversationID: chatID, content: content,
                    clientMessageID: traceID ?? UUID().uuidString.lowercased(), pattern: data["pattern"]?.stringValue)
                session.outbound.enqueue(
                    BishengFrames.json(
                        type: "progress", data: ["stage": "accepted", "message_id": .string(messageID), "chat_id": .string(chatID)],
                        traceID: traceID ?? messageID))
            case "interrupt":
                try await MessageSubmitter(context: context).interrupt(
                    userID: session.userID, conversationID: chatID, requestID: traceID ?? UUID().uuidString.lowercased())
                session.outbound.enqueue(
                    BishengFrames.json(type: "interrupt", data: ["chat_id": .string(chatID), "status": "stopping"], traceID: traceID))
            case "end":
                _ = try await store.updateSession(chatID, user: session.userID, changes: SessionChanges(state: .ended))
                session.outbound.enqueue(
                    BishengFrames.json(type: "end", data: ["chat_id": .string(chatID), "state": "ended"], traceID: traceID))
                session.outbound.close(.sessionEnded, reason: "session ended")
                return true
            case "ping", "heartbeat":
                session.outbound.enqueue(BishengFrames.json(type: "progress", data: ["stage": "pong"], traceID: traceID))
            default:
                throw CommandError(.unknownType, "unknown type \(type); send message, interrupt or end")
            }
        } catch let error as CommandError {
            session.outbound.enqueue(BishengFrames.error(code: error.code.rawValue, message: error.message, traceID: traceID))
        } catch {
            context.logger.warning("chat frame failed", metadata: ["chat.id": "\(chatID)", "error": "\(error)"])
            session.outbound.enqueue(
                BishengFrames.error(code: ErrorCode.unavailable.rawValue, message: "could not be completed; retry", traceID: traceID))
        }
        return false
    }
}

/// An atomic integer that escaping closures and copyable structs can share.
final class SharedInt: Sendable {
    let value: Atomic<Int>

    init(_ initial: Int) { value = Atomic(initial) }
}
