import ArgumentParser
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import Metrics
import NIOCore
import NIOSSL
import NIOWebSocket
import ServiceLifecycle
import Synchronization
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTracing
import SwitchboardStore

/// Applies one client command and answers it with exactly one ACK or ERROR frame carrying its id.
struct CommandHandler: Sendable {
    let context: ServiceContext
    let hub: DeliveryHub
    let access: ConversationAccess
    let history: ChannelHistory
    let roles: RoleDirectory
    let admission: Admission
    let settings: GatewaySettings
    let store: HistoryStore

    func handle(_ message: WebSocketMessage, session: ClientSession) async {
        // nil: the command was answered already, in order with what followed it (a subscription's ACK
        // comes before the events it recovered).
        let answer = await answer(message, session: session)
        if let answer { session.send(answer) }
        if answer?.error?.code == ErrorCode.rateLimited.rawValue, session.recordRateRefusal(settings: settings) {
            session.outbound.close(
                .tooManyRequests, reason: "over the request rate for \(settings.rateExcessWindow); slow down")
        }
        if session.recordAnswer(isError: Self.isClientError(answer)) >= settings.maxConsecutiveErrors {
            session.outbound.close(.badRequest, reason: "too many invalid commands")
        }
    }

    /// Only the client's own mistakes count towards the close after `maxConsecutiveErrors`: not being
    /// rate limited, and not the server's failures (a Redis or Kafka outage must not disconnect everyone).
    static func isClientError(_ answer: ServerFrame?) -> Bool {
        guard let answer, answer.status == .error else { return false }
        let notTheClients: Set<String> = [
            ErrorCode.rateLimited.rawValue, ErrorCode.unavailable.rawValue, ErrorCode.internalError.rawValue,
        ]
        return !notTheClients.contains(answer.error?.code ?? "")
    }

    private func answer(_ message: WebSocketMessage, session: ClientSession) async -> ServerFrame? {
        guard case .text(let text) = message else {
            return .error(nil, code: .badFrame, message: "frames on /ws are JSON text")
        }
        let command: ClientCommand
        do {
            command = try JSONDecoder().decode(ClientCommand.self, from: Data(text.utf8))
        } catch {
            return .error(nil, code: .badFrame, message: "a frame is a JSON object {id, type, timestamp, data}")
        }
        guard GatewayLimits.isValidClientID(command.id) else {
            return .error(
                nil, code: .invalidArgument,
                message:
                    "a command id is \(GatewayLimits.clientIDLength.lowerBound)-\(GatewayLimits.clientIDLength.upperBound) characters"
            )
        }
        GatewayMetrics.commands[Self.metricType(command.type)]?.increment()
        do {
            // PING stays free so a client can always measure latency and keep its connection alive.
            if command.type != ClientCommandType.ping, try await !admission.allowRequest(userID: session.userID) {
                return .error(
                    command.id, code: .rateLimited,
                    message: "more than \(Int(settings.commandsPerSecond)) commands per second; slow down")
            }
            // The root of the trace that follows this command through every service.
            return try await Tracing.withSpan(
                command.type, kind: .server, parent: .root,
                attributes: [("switchboard.command.id", .string(command.id)), ("enduser.id", .string(session.userID))]
            ) {
                try await apply(command, session: session)
            }
        } catch let error as CommandError {
            return .error(command.id, code: error.code, message: error.message)
        } catch {
            context.logger.warning("command failed", metadata: ["command": "\(command.type)", "error": "\(error)"])
            return .error(command.id, code: .unavailable, message: "the command could not be completed; retry")
        }
    }

    /// Tells a conversation's subscribers that a connection joined or left it. Ephemeral, like
    /// typing: shown live, never stored or replayed; best effort (a lost one is not an error).
    func announcePresence(_ type: String, of session: ClientSession, in conversationID: String) async {
        do {
            let event = try ClientEvent(
                channel: .conversation(conversationID), frameType: type,
                fields: Presence(conversationId: conversationID, userId: session.userID, connectionId: session.id),
                ephemeral: true)
            try await context.publish(context.envelope(event, routingKey: conversationID), to: Topics.clientEvents)
        } catch {
            context.logger.debug("presence not announced", metadata: ["error": "\(error)"])
        }
    }

    private func apply(_ command: ClientCommand, session: ClientSession) async throws -> ServerFrame? {
        switch command.type {
        case ClientCommandType.ping:
            let now = Clock.epochMilliseconds()
            let sent = command.data?["timestamp"]?.intValue.map(Int64.init) ?? command.timestamp ?? now
            return try ServerFrame(correlationId: command.id, payload: Pong(sent: sent, now: now))
        case ClientCommandType.subscribeConversation:
            let conversationID = try conversationID(of: command)
            try await authorize(session, conversationID)
            let since = try position(of: command)
            let joining = !session.isFollowing(.conversation(conversationID))
            // Read before following: the ACK, then this history, then every role's state at once
            // (ROLE_STATUS_SNAPSHOT), then the recovered and live events.
            let recent = try await HistoryRoutes.subscribeHistory(
                command, conversationID: conversationID, user: session.userID, store: store)
            _ = try await session.follow(
                .conversation(conversationID), since: since, hub: hub, history: history,
                snapshot: {
                    try FrameEncoding.json(
                        try await roles.snapshot(conversation: conversationID, channel: .conversation(conversationID)))
                }
            ) { recovered, position in
                let ack = SubscriptionAck(conversationId: conversationID, recovered: recovered, position: position)
                session.send(
                    (try? .ack(command.id, ack))
                        ?? .error(command.id, code: .internalError, message: "the ACK could not be encoded"))
                if let recent { session.send(recent) }
            }
            if joining { await announcePresence(FrameType.presenceJoin, of: session, in: conversationID) }
            return nil
        case ClientCommandType.unsubscribeConversation:
            let conversationID = try conversationID(of: command)
            if session.isFollowing(.conversation(conversationID)) {
                await announcePresence(FrameType.presenceLeave, of: session, in: conversationID)
            }
            await session.unfollow(.conversation(conversationID))
            return try .ack(command.id, ConversationAck(conversationId: conversationID))
        case ClientCommandType.sendMessage:
            return try await sendMessage(command, session: session)
        case ClientCommandType.typingStart, ClientCommandType.typingStop:
            let conversationID = try conversationID(of: command)
            guard session.isFollowing(.conversation(conversationID)) else {
                throw CommandError(.invalidArgument, "subscribe to \(conversationID) before typing in it")
            }
            // Ephemeral: shown live to the conversation's subscribers, never stored or recovered.
            let event = try ClientEvent(
                channel: .conversation(conversationID), frameType: command.type,
                fields: Typing(conversationId: conversationID, userId: session.userID), ephemeral: true)
            try await context.publish(context.envelope(event, routingKey: conversationID), to: Topics.clientEvents)
            return try .ack(command.id, ConversationAck(conversationId: conversationID))
        case ClientCommandType.requestRoleFocus:
            return try await requestRoleFocus(command, session: session)
        case ClientCommandType.interrupt:
            let conversationID = try conversationID(of: command)
            try await authorize(session, conversationID)
            try await MessageSubmitter(context: context).interrupt(
                userID: session.userID, conversationID: conversationID, requestID: command.id)
            return try .ack(command.id, InterruptAck(conversationId: conversationID))
        default:
            throw CommandError(.unknownType, "unknown command type \(command.type)")
        }
    }

    private func sendMessage(_ command: ClientCommand, session: ClientSession) async throws -> ServerFrame {
        let conversationID = try conversationID(of: command)
        guard let content = command.data?["content"]?.stringValue,
            !content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        else { throw CommandError(.invalidArgument, "data.content must be a non-empty string") }
        guard content.count <= settings.maxContentLength else {
            throw CommandError(
                .contentTooLong, "content is \(content.count) characters; the limit is \(settings.maxContentLength)")
        }
        try await authorize(session, conversationID)
        // Follow the conversation before the message leaves, so not one event of the reply is missed.
        if !session.isFollowing(.conversation(conversationID)) {
            _ = try await session.follow(.conversation(conversationID), since: nil, hub: hub, history: history)
        }
        let messageID = try await MessageSubmitter(context: context).submit(
            userID: session.userID, conversationID: conversationID, content: content, clientMessageID: command.id,
            pattern: command.data?["pattern"]?.stringValue, busyPolicy: command.data?["busyPolicy"]?.stringValue)
        return try .ack(command.id, MessageAck(messageId: messageID, conversationId: conversationID))
    }

    /// A role of the team leads the conversation's next run; ACK once Kafka has the request.
    private func requestRoleFocus(_ command: ClientCommand, session: ClientSession) async throws -> ServerFrame {
        let conversationID = try conversationID(of: command)
        guard let requested = command.data?["role"]?.stringValue, !requested.isEmpty else {
            throw CommandError(.invalidArgument, "data.role must name a role of the team")
        }
        guard let team = try await roles.team() else {
            throw CommandError(.unavailable, "no orchestrator has announced its team yet; retry")
        }
        guard let role = team.role(named: requested) else {
            throw CommandError(
                .invalidArgument,
                "unknown role \(requested); the team's roles are \(team.roles.map(\.name).joined(separator: ", "))")
        }
        try await authorize(session, conversationID)
        let payload = ChatRoleFocusRequested(
            conversationId: conversationID, userId: session.userID, role: role, requestId: command.id,
            gateway: context.configuration.instanceID)
        try await context.publish(context.envelope(payload, routingKey: conversationID), to: Topics.chatRequests)
        return try .ack(command.id, RoleFocusAck(conversationId: conversationID, role: role))
    }

    private func conversationID(of command: ClientCommand) throws -> String {
        guard let id = command.data?["conversationId"]?.stringValue, Self.isValidID(id) else {
            throw CommandError(
                .invalidArgument, "data.conversationId must be 1-128 characters of letters, digits, '-', '_' or '.'")
        }
        return id
    }

    /// The resume position of a SUBSCRIBE_CONVERSATION: `data.offset` and `data.epoch`, or neither.
    private func position(of command: ClientCommand) throws -> StreamPosition? {
        let offset = command.data?["offset"]
        let epoch = command.data?["epoch"]
        if (offset == nil || offset == .null) && (epoch == nil || epoch == .null) { return nil }
        guard let offset = offset?.intValue, offset >= 0, let epoch = epoch?.stringValue, !epoch.isEmpty else {
            throw CommandError(
                .invalidArgument, "a resume position is data.offset (integer ≥ 0) with data.epoch (string)")
        }
        return StreamPosition(epoch: epoch, offset: Int64(offset))
    }

    /// Asks Redis once per connection and conversation; every later message skips the round trip.
    private func authorize(_ session: ClientSession, _ conversationID: String) async throws {
        if session.isAuthorized(for: conversationID) { return }
        guard try await access.authorize(userID: session.userID, conversationID: conversationID) else {
            throw CommandError(.permissionDenied, "conversation \(conversationID) belongs to another user")
        }
        session.recordAuthorized(conversationID)
    }

    static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128
            && id.unicodeScalars.allSatisfy {
                CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0)
            }
    }

    static let knownTypes: Set<String> = [
        ClientCommandType.ping, ClientCommandType.sendMessage, ClientCommandType.subscribeConversation,
        ClientCommandType.unsubscribeConversation, ClientCommandType.typingStart, ClientCommandType.typingStop,
        ClientCommandType.requestRoleFocus, ClientCommandType.interrupt,
    ]

    /// Unknown types are counted under one label so clients cannot grow the metric's cardinality.
    static func metricType(_ type: String) -> String {
        knownTypes.contains(type) ? type : "other"
    }
}

struct CommandError: Error {
    var code: ErrorCode
    var message: String

    init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }
}
