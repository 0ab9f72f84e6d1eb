import Foundation
import SwitchboardContracts

/// Channel events as the services send them: a contract payload's frame on `conversation:c`, at fixed
/// times, so a translation of it can be compared byte for byte.
enum ChannelEventFixtures {
    /// The frame's time: 2025-11-21T23:00:00.000Z.
    static let frameTime: Int64 = 1_763_766_000_000
    /// The time an agent's own seed fields carry: 2025-11-21T23:00:01.500Z.
    static let eventTime = Date(timeIntervalSince1970: 1_763_766_001.5)

    static func wire(_ payload: some FramePayload, offset: Int64 = 3) throws -> ChannelWire.Message {
        let frame = ServerFrame(
            id: "f\(offset)", type: payload.frameType, timestamp: frameTime, data: try payload.data(),
            channel: "conversation:c")
        return ChannelWire.Message(
            offset: offset, epoch: "e1", frameType: frame.type, frameJSON: try FrameEncoding.json(frame))
    }

    static func ids(_ messageID: String, role: String, run: String = "r1") -> ReplyIDs {
        ReplyIDs(messageId: messageID, conversationId: "c", role: role, runId: run)
    }

    static let start = CollaborationStart(
        conversationId: "c", runId: "r1", messageId: "m1", roles: ["Alex", "Kulu"], pattern: .parallel,
        reason: "two views", estimatedDuration: 900)

    /// The orchestrator's own reply when the final role failed (no seed fields, no run id).
    static let fallbackChunk = FallbackReplyChunk(
        messageId: "reply-r1", conversationId: "c", chunk: "in place", role: "David")

    static let agentError = AgentError(
        ids: ids("reply-r1-kulu", role: "Kulu"),
        payload: AgentEvent.ErrorPayload(
            error: "provider down", errorType: "provider_error",
            context: .init(agentSource: "Kulu", conversationId: "c", runId: "r1"), retryCount: 3),
        at: eventTime)

    /// An agent's chunk of the reply `reply`.
    static func replyChunk(_ text: String, reply: String = "reply-r1", position: Int = 0) -> MessageStreamChunk {
        MessageStreamChunk(
            ids: ids(reply, role: "David"), chunk: text, position: position, isComplete: false, at: eventTime)
    }

    /// The run `run` ended with `answer`.
    static func completion(run: String, answer: String) -> CollaborationComplete {
        var completion = Self.completion
        completion.runId = run
        completion.result.answer = answer
        return completion
    }

    static let completion = CollaborationComplete(
        conversationId: "c", runId: "r1", messageId: "m1", pattern: .parallel,
        result: .init(
            status: "partial", answer: "done", answeredBy: "Catherine", failedRoles: ["Kulu"], note: "Kulu failed"),
        contributions: [RoleContribution(role: "Alex", status: "completed", content: "a", durationMs: 40)],
        duration: 1200)
}
