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
/// the reply's start and end, role status changes, errors, tool calls and the run's outcome. Chunks
/// are not stored one by one: the end of a reply carries its whole (or partial) text.
public enum HistoryMapper {
    public static func writes(for envelope: Envelope<ChatMessageSubmitted>) -> [HistoryWrite] {
        let message = envelope.payload
        var extra: [String: JSONValue] = ["clientMessageId": .string(message.clientMessageId)]
        if let pattern = message.pattern { extra["pattern"] = .string(pattern) }
        if let policy = message.busyPolicy { extra["busyPolicy"] = .string(policy) }
        return [
            .userMessage(
                UserMessageWrite(
                    eventId: envelope.id, messageId: message.messageId, chatId: message.conversationId,
                    userId: message.userId, content: message.content, extra: json(.object(extra)),
                    createdAt: envelope.time))
        ]
    }

    public static func writes(forInterrupt envelope: Envelope<ChatInterruptRequested>) -> [HistoryWrite] {
        [.sessionState(chatId: envelope.payload.conversationId, state: .interrupted, at: envelope.time)]
    }

    public static func writes(for envelope: Envelope<ClientEvent>) -> [HistoryWrite] {
        let event = envelope.payload
        guard event.channel.kind == .conversation, !event.ephemeral else { return [] }
        let chatId = event.channel.id
        let data = event.data
        let id = envelope.id.uuidString.lowercased()
        func part(_ kind: String, role: String?, content: String?, runId: String? = nil) -> TurnPart {
            TurnPart(
                id: id, chatId: chatId, runId: runId ?? nonEmpty(data["runId"]?.stringValue),
                messageId: data["messageId"]?.stringValue, kind: kind, role: role, content: content, data: json(data),
                createdAt: envelope.time)
        }
        switch event.frameType {
        case FrameType.messageStreamStart:
            return [
                .part(
                    part(
                        "stream_start", role: data["role"]?.stringValue, content: nil,
                        runId: data["inReplyTo"]?.stringValue)),
                .sessionState(chatId: chatId, state: .inProgress, at: envelope.time),
            ]
        case FrameType.messageStreamEnd:
            guard let messageId = data["messageId"]?.stringValue else { return [] }
            let final = data["finalMessage"] ?? .object([:])
            let metadata = data["metadata"] ?? .object([:])
            let status =
                metadata["status"]?.stringValue.flatMap { $0 == "stopped" || $0 == "failed" ? $0 : nil } ?? "completed"
            var extra: [String: JSONValue] = [:]
            if let engine = metadata["engine"] { extra["engine"] = engine }
            if let error = metadata["error"] { extra["error"] = error }
            if let failedRole = metadata["failedRole"] { extra["failedRole"] = failedRole }
            var usage: [String: JSONValue] = [:]
            for key in ["chunks", "durationMs", "promptTokens", "completionTokens", "totalTokens"] {
                if let value = metadata[key] { usage[key] = value }
            }
            let reply = AssistantMessageWrite(
                eventId: envelope.id, messageId: messageId, chatId: chatId,
                role: final["role"]?.stringValue ?? "assistant",
                content: final["content"]?.stringValue ?? "", status: status, runId: ReplyID.answered(by: messageId),
                usage: json(.object(usage)), extra: json(.object(extra)), finishedAt: envelope.time)
            return [
                .part(part("stream_end", role: reply.role, content: nil, runId: reply.runId)),
                .assistantMessage(reply),
                .sessionState(
                    chatId: chatId, state: status == "stopped" ? .interrupted : .waitingForInput, at: envelope.time),
            ]
        case FrameType.roleStatusChange:
            return [.part(part("role_status", role: data["role"]?.stringValue, content: data["status"]?.stringValue))]
        case FrameType.agentError:
            let message = data["payload"]?["error"]?.stringValue ?? data["error"]?.stringValue
            return [.part(part("error", role: data["role"]?.stringValue, content: message))]
        case FrameType.toolCall:
            return [.part(part("tool_call", role: data["role"]?.stringValue, content: data["name"]?.stringValue))]
        case FrameType.collaborationComplete:
            guard let runId = data["runId"]?.stringValue else { return [] }
            let result = data["result"] ?? .object([:])
            let contributions = data["contributions"]?.arrayValue ?? []
            let texts = contributions.enumerated().map { index, contribution in
                TurnPart(
                    id: "\(id)#\(index)", chatId: chatId, runId: runId, messageId: nil, kind: "text",
                    role: contribution["role"]?.stringValue, content: contribution["content"]?.stringValue ?? "",
                    data: json(contribution), createdAt: envelope.time)
            }
            var usage: [String: JSONValue] = ["roles": .number(Double(contributions.count))]
            if let duration = data["duration"] { usage["durationMs"] = duration }
            return [
                .turn(
                    TurnWrite(
                        eventId: envelope.id, runId: runId, chatId: chatId, messageId: data["messageId"]?.stringValue,
                        status: result["status"]?.stringValue ?? "completed", pattern: data["pattern"]?.stringValue,
                        answer: result["answer"]?.stringValue, failedRoles: json(result["failedRoles"] ?? .array([])),
                        usage: json(.object(usage)), finishedAt: envelope.time, texts: texts))
            ]
        default:
            return []
        }
    }

    static func nonEmpty(_ value: String?) -> String? {
        value.flatMap { $0.isEmpty ? nil : $0 }
    }

    static func json(_ value: JSONValue) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? String(decoding: encoder.encode(value), as: UTF8.self)) ?? "{}"
    }
}

extension FrameType {
    /// A role called a tool (seed 001's tool events); stored as a turn part.
    public static let toolCall = "TOOL_CALL"
}
