import Foundation
import SwitchboardContracts

/// A row to write, derived from one bus event. Each carries the event's id so that writing it twice
/// writes it once.
public enum HistoryWrite: Sendable, Equatable {
    case userMessage(UserMessageWrite)
    case assistantMessage(AssistantMessageWrite)
    case part(TurnPart)
    case turn(TurnWrite)
    case sessionState(chatId: String, state: SessionState, at: Int64)
}

public struct UserMessageWrite: Sendable, Equatable {
    public var eventId: UUID
    public var messageId: String
    public var chatId: String
    public var userId: String
    public var content: String
    /// JSON object text: the client's command id, pattern, busy policy.
    public var extra: String
    public var createdAt: Int64
}

public struct AssistantMessageWrite: Sendable, Equatable {
    public var eventId: UUID
    public var messageId: String
    public var chatId: String
    public var role: String
    public var content: String
    public var status: String
    public var runId: String?
    public var usage: String
    public var extra: String
    public var finishedAt: Int64
}

public struct TurnWrite: Sendable, Equatable {
    public var eventId: UUID
    public var runId: String
    public var chatId: String
    public var messageId: String?
    public var status: String
    public var pattern: String?
    public var answer: String?
    public var failedRoles: String
    public var usage: String
    public var finishedAt: Int64
    /// Each role's whole text, in the order the run reported them.
    public var texts: [TurnPart]
}

/// What the history keeps of each bus event: user messages from `sb.chat.requests`; from
/// `sb.client.events` (conversation channel only, the role-activity copies are the same events again)
/// the reply's start and end, role status changes, errors and the run's outcome. Chunks are not stored
/// one by one: the end of a reply carries its whole (or partial) text.
///
/// Events are read as their frames' payload types, the shapes every producer writes (and the previous
/// release wrote: the types kept the field names the frames had when they were built by hand). An event
/// whose data is not its type's shape throws: the recorder dead-letters it, where it can be looked at
/// and replayed (`switchboard dlq`), instead of a row written with fields missing.
public enum HistoryMapper {
    /// A user message's `extra`: the client's command id and choices.
    struct UserMessageExtra: Encodable {
        var clientMessageId: String
        var pattern: String?
        var busyPolicy: String?
    }

    /// A reply's `usage`.
    struct ReplyUsage: Encodable {
        var chunks: Int
        var durationMs: Int?
    }

    /// A reply's `extra`: the engine, and why it failed.
    struct ReplyExtra: Encodable {
        var engine: String
        var error: String?
        var failedRole: String?
    }

    /// A turn's `usage`.
    struct TurnUsage: Encodable {
        var roles: Int
        var durationMs: Int
    }

    public static func writes(for envelope: Envelope<ChatMessageSubmitted>) -> [HistoryWrite] {
        let message = envelope.payload
        let extra = UserMessageExtra(
            clientMessageId: message.clientMessageId, pattern: message.pattern, busyPolicy: message.busyPolicy)
        return [
            .userMessage(
                UserMessageWrite(
                    eventId: envelope.id, messageId: message.messageId, chatId: message.conversationId,
                    userId: message.userId, content: message.content, extra: json(extra), createdAt: envelope.time))
        ]
    }

    public static func writes(forInterrupt envelope: Envelope<ChatInterruptRequested>) -> [HistoryWrite] {
        [.sessionState(chatId: envelope.payload.conversationId, state: .interrupted, at: envelope.time)]
    }

    public static func writes(for envelope: Envelope<ClientEvent>) throws -> [HistoryWrite] {
        let event = envelope.payload
        guard event.channel.kind == .conversation, !event.ephemeral else { return [] }
        let chatId = event.channel.id
        let id = envelope.id.uuidString.lowercased()
        func part(_ kind: String, runId: String?, messageId: String?, role: String?, content: String?) -> TurnPart {
            TurnPart(
                id: id, chatId: chatId, runId: runId, messageId: messageId, kind: kind, role: role, content: content,
                data: json(event.data), createdAt: envelope.time)
        }
        switch event.frameType {
        case MessageStreamStart.frameType:
            let start = try event.data.decode(as: MessageStreamStart.self)
            return [
                .part(
                    part(
                        "stream_start", runId: start.inReplyTo, messageId: start.messageId, role: start.role,
                        content: nil)),
                .sessionState(chatId: chatId, state: .inProgress, at: envelope.time),
            ]
        case MessageStreamEnd.frameType:
            let end = try event.data.decode(as: MessageStreamEnd.self)
            let status = end.metadata.status.flatMap { $0 == "stopped" || $0 == "failed" ? $0 : nil } ?? "completed"
            let reply = AssistantMessageWrite(
                eventId: envelope.id, messageId: end.messageId, chatId: chatId, role: end.finalMessage.role,
                content: end.finalMessage.content, status: status, runId: ReplyID.answered(by: end.messageId),
                usage: json(ReplyUsage(chunks: end.metadata.chunks, durationMs: end.metadata.durationMs)),
                extra: json(
                    ReplyExtra(
                        engine: end.metadata.engine, error: end.metadata.error, failedRole: end.metadata.failedRole)),
                finishedAt: envelope.time)
            return [
                .part(part("stream_end", runId: reply.runId, messageId: end.messageId, role: reply.role, content: nil)),
                .assistantMessage(reply),
                .sessionState(
                    chatId: chatId, state: status == "stopped" ? .interrupted : .waitingForInput, at: envelope.time),
            ]
        case RoleStatusChange.frameType:
            let change = try event.data.decode(as: RoleStatusChange.self)
            return [.part(part("role_status", runId: nil, messageId: nil, role: change.role, content: change.status))]
        case AgentError.frameType:
            let failure = try event.data.decode(as: AgentError.self)
            return [
                .part(
                    part(
                        "error", runId: nonEmpty(failure.ids.runId), messageId: failure.ids.messageId,
                        role: failure.ids.role, content: failure.event.payload.error))
            ]
        case CollaborationComplete.frameType:
            let complete = try event.data.decode(as: CollaborationComplete.self)
            let texts = complete.contributions.enumerated().map { index, contribution in
                TurnPart(
                    id: "\(id)#\(index)", chatId: chatId, runId: complete.runId, messageId: nil, kind: "text",
                    role: contribution.role, content: contribution.content, data: json(contribution),
                    createdAt: envelope.time)
            }
            let result = complete.result
            return [
                .turn(
                    TurnWrite(
                        eventId: envelope.id, runId: complete.runId, chatId: chatId, messageId: complete.messageId,
                        status: result.status, pattern: complete.pattern.rawValue, answer: result.answer,
                        failedRoles: json(result.failedRoles),
                        usage: json(TurnUsage(roles: complete.contributions.count, durationMs: complete.duration)),
                        finishedAt: envelope.time, texts: texts))
            ]
        default:
            return []
        }
    }

    static func nonEmpty(_ value: String?) -> String? {
        value.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// JSON text as the history's columns keep it: sorted keys, so equal values are equal text.
    static func json(_ value: some Encodable) -> String {
        (try? String(decoding: columnEncoder.encode(value), as: UTF8.self)) ?? "{}"
    }

    /// One for every row (an encoder per column value cost one allocation and set-up each).
    private static let columnEncoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}
