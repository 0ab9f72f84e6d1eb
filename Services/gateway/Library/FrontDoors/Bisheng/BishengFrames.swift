import Foundation
import SwitchboardContracts

/// Bisheng's frames: `{type, data, trace_id}` with type start, message, progress, result, error,
/// end or interrupt (docs/history.md), their payloads in BishengPayloads.swift. Pure, so the wire form
/// is tested byte for byte.
enum BishengFrames {
    static let types: Set<String> = ["start", "message", "progress", "result", "error", "end", "interrupt"]

    static func json(type: String, data: some Encodable & Sendable, traceID: String?) -> String {
        let frame = Frame(type: type, data: data, traceID: traceID)
        return (try? String(decoding: GatewayJSON.encoder.encode(JSONValueEncoder().encode(frame)), as: UTF8.self))
            ?? #"{"type":"error"}"#
    }

    static func error(code: String, message: String, traceID: String?) -> String {
        json(type: "error", data: Failure(code: code, message: message), traceID: traceID)
    }

    /// A conversation event in Bisheng's terms: the reply's chunks are `message`, its end `result`,
    /// the run's end `end`, failures `error`, everything else (roles, progress) `progress` with the
    /// chat-centre type in `data.event`. The trace id is the run's (the user message's id).
    static func translate(_ message: ChannelWire.Message) -> String {
        guard let frame = try? JSONDecoder().decode(ServerFrame.self, from: Data(message.frameJSON.utf8)) else {
            return error(code: ErrorCode.internalError.rawValue, message: "unreadable event", traceID: nil)
        }
        let traceID = (try? frame.data.decode(as: RunReference.self))?.runID
        guard let (type, data) = ownFrame(of: frame) else {
            return json(
                type: "progress", data: PassedOn(event: frame.type, fields: frame.data.objectValue ?? [:]),
                traceID: traceID)
        }
        return json(type: type, data: data, traceID: traceID)
    }

    /// The frame's own Bisheng type and data, for the frames Bisheng has one for.
    private static func ownFrame(of frame: ServerFrame) -> (type: String, data: any Encodable & Sendable)? {
        func payload<Payload: FramePayload>(_: Payload.Type) -> Payload? {
            try? frame.data.decode(as: Payload.self)
        }
        switch frame.type {
        case FrameType.messageStreamChunk:
            // An agent's reply, or the orchestrator's own when the final role failed.
            guard
                let chunk = payload(MessageStreamChunk.self).map(Message.init)
                    ?? payload(FallbackReplyChunk.self).map(Message.init)
            else { return nil }
            return ("message", chunk)
        case FrameType.messageStreamEnd:
            return payload(MessageStreamEnd.self).map { ("result", ReplyResult($0)) }
        case FrameType.collaborationComplete:
            return payload(CollaborationComplete.self).map { ("end", RunEnd($0)) }
        case FrameType.agentError:
            return payload(AgentError.self).map { ("error", Failure($0)) }
        case FrameType.messageRejected:
            return payload(MessageRejected.self).map { ("error", Failure($0)) }
        default:
            return nil
        }
    }
}
