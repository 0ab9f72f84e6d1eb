import Foundation
import SwitchboardContracts

/// The client frames of one agent task, typed (Frames/ReplyFrames.swift), for what its `ReplyNarrator`
/// decided.
struct TaskFrames: Sendable {
    let task: AgentTaskRequested
    let ids: ReplyIDs
    /// The answer is the reply (MESSAGE_STREAM_CHUNK), not a contribution (AGENT_CHUNK).
    let isReply: Bool

    init(task: AgentTaskRequested) {
        self.task = task
        self.ids = ReplyIDs(
            messageId: task.replyMessageId, conversationId: task.conversationId, role: task.role,
            runId: task.runId ?? "")
        self.isReply = ReplyNarrator.Kind(task).isFinal
    }

    var start: AgentStart {
        AgentStart(ids: ids, payload: AgentStartPayload(taskDescription: task.responsibility ?? "answer the message"))
    }

    /// MESSAGE_STREAM_CHUNK for the final role's reply, AGENT_CHUNK for a contribution.
    func chunk(_ chunk: ReplyNarrator.Chunk, firstTokenAt: Int64?) -> any FramePayload {
        func make<Stream: ChunkStream>(_: Stream.Type) -> ReplyChunk<Stream> {
            ReplyChunk(
                ids: ids, chunk: chunk.text, position: chunk.position, isComplete: chunk.isLast,
                firstTokenAt: firstTokenAt)
        }
        return isReply ? make(ReplyStream.self) : make(ContributionStream.self)
    }

    func replyStart(estimatedLength: Int?) -> MessageStreamStart {
        MessageStreamStart(
            messageId: task.replyMessageId, conversationId: task.conversationId, role: task.role,
            inReplyTo: task.inReplyTo, estimatedLength: estimatedLength)
    }

    func replyEnd(_ ending: ReplyNarrator.Ending, engine: String, at epochMilliseconds: Int64) -> MessageStreamEnd {
        var metadata = MessageStreamEnd.Metadata(chunks: ending.chunks, durationMs: ending.durationMs, engine: engine)
        switch ending.outcome {
        case .completed: break
        case .stopped: metadata.status = "stopped"
        case .failed(let error):
            metadata.status = "failed"
            metadata.error = error.message
        }
        return MessageStreamEnd(
            messageId: task.replyMessageId,
            finalMessage: .init(
                id: task.replyMessageId, conversationId: task.conversationId, role: task.role, content: ending.content,
                createdAt: epochMilliseconds),
            metadata: metadata)
    }

    /// agent_complete, or error for a failure.
    func end(_ ending: ReplyNarrator.Ending, engine: String) -> any FramePayload {
        let status: String
        switch ending.outcome {
        case .completed: status = "completed"
        case .stopped: status = "stopped"
        case .failed(let failure):
            return AgentError(
                ids: ids,
                payload: AgentEvent.ErrorPayload(
                    error: failure.message, errorType: failure.code.description,
                    context: .init(
                        agentSource: task.role, conversationId: task.conversationId, runId: task.runId,
                        provider: engine),
                    retryCount: failure.retries))
        }
        return AgentComplete(
            ids: ids,
            payload: AgentCompletePayload(
                status: status, summary: String(ending.content.prefix(120)), chunks: ending.chunks,
                durationMs: ending.durationMs))
    }
}
