import Foundation
import SwitchboardContracts
import Testing

@testable import AgentWorker

/// The agent-worker's frames, typed: each one's `data` is the object the frame had when it was built by
/// hand (the literals below are those builders'), and reads back as its type.
@Suite struct ReplyFramesTests {
    static let task = AgentTaskRequested(
        taskId: "t1", conversationId: "c1", userId: "u1", replyMessageId: "reply-m1", inReplyTo: "m1", role: "Kulu",
        prompt: "hello", runId: "run-1", responsibility: "weigh the options")
    let frames = TaskFrames(task: Self.task)
    let date = Date(timeIntervalSince1970: 1_700_000_000.123)
    var timestamp: String { AgentEvent.isoTimestamp(date) }

    /// The reply's ids and seed 001's event fields, as the builders merged them.
    func handBuilt(_ type: String, payload: JSONValue, extra: [String: JSONValue] = [:]) -> JSONValue {
        var data: [String: JSONValue] = [
            "messageId": "reply-m1", "conversationId": "c1", "role": "Kulu", "runId": "run-1",
            "event_type": .string(type), "agent_source": "Kulu", "timestamp": .string(timestamp), "payload": payload,
        ]
        data.merge(extra) { _, new in new }
        return .object(data)
    }

    func roundTrips<P: FramePayload & Equatable>(_ payload: P) throws {
        let bytes = try JSONEncoder().encode(payload)
        #expect(try JSONDecoder().decode(P.self, from: bytes) == payload)
    }

    @Test func agentStart() throws {
        let start = AgentStart(
            ids: frames.ids, payload: AgentStartPayload(taskDescription: "weigh the options"), at: date)
        #expect(start.frameType == FrameType.agentStart)
        #expect(
            try start.data()
                == handBuilt(
                    AgentEvent.agentStart, payload: ["status": "started", "task_description": "weigh the options"]))
        try roundTrips(start)
        #expect(frames.start.event.payload.taskDescription == "weigh the options")
    }

    @Test func chunksOfTheReplyAndOfAContribution() throws {
        let chunk = MessageStreamChunk(
            ids: frames.ids, chunk: "Hi ", position: 12, isComplete: false, firstTokenAt: 1_700_000_000_123_456,
            at: date)
        #expect(chunk.frameType == FrameType.messageStreamChunk)
        #expect(
            try chunk.data()
                == handBuilt(
                    AgentEvent.llmChunk, payload: ["content": "Hi ", "content_type": "text", "is_complete": false],
                    extra: ["chunk": "Hi ", "position": 12, "firstTokenAt": .number(1_700_000_000_123_456)]))
        try roundTrips(chunk)

        let last = AgentChunk(ids: frames.ids, chunk: "", position: 15, isComplete: true, at: date)
        #expect(last.frameType == FrameType.agentChunk)
        #expect(
            try last.data()
                == handBuilt(
                    AgentEvent.llmChunk, payload: ["content": "", "content_type": "text", "is_complete": true],
                    extra: ["chunk": "", "position": 15]))
        try roundTrips(last)
    }

    @Test func theTaskPicksTheChunkFrameByWhetherItsAnswerIsTheReply() {
        let chunk = ReplyNarrator.Chunk(text: "a", index: 0, position: 0, isLast: false)
        #expect(frames.chunk(chunk, firstTokenAt: nil).frameType == FrameType.messageStreamChunk)
        var contribution = Self.task
        contribution.isFinal = false
        #expect(TaskFrames(task: contribution).chunk(chunk, firstTokenAt: nil).frameType == FrameType.agentChunk)
    }

    @Test func replyStart() throws {
        #expect(
            try frames.replyStart(estimatedLength: nil).data() == [
                "messageId": "reply-m1", "conversationId": "c1", "role": "Kulu", "inReplyTo": "m1",
            ])
        #expect(try frames.replyStart(estimatedLength: 240).data()["estimatedLength"] == 240)
        try roundTrips(frames.replyStart(estimatedLength: 240))
    }

    @Test func replyEndOfEachOutcome() throws {
        func end(_ outcome: ReplyNarrator.Outcome) throws -> JSONValue {
            let ending = ReplyNarrator.Ending(outcome: outcome, content: "All done.", chunks: 3, durationMs: 420)
            return try frames.replyEnd(ending, engine: "offline", at: 1_700_000_000_123).data()
        }
        let finalMessage: JSONValue = [
            "id": "reply-m1", "conversationId": "c1", "role": "Kulu", "content": "All done.",
            "createdAt": 1_700_000_000_123,
        ]
        #expect(
            try end(.completed) == [
                "messageId": "reply-m1", "finalMessage": finalMessage,
                "metadata": ["chunks": 3, "durationMs": 420, "engine": "offline"],
            ])
        #expect(
            try end(.stopped)["metadata"] == ["chunks": 3, "durationMs": 420, "engine": "offline", "status": "stopped"])
        #expect(
            try end(.failed(ProviderError(.timeout, "no complete answer within 5.0 s")))["metadata"] == [
                "chunks": 3, "durationMs": 420, "engine": "offline", "status": "failed",
                "error": "no complete answer within 5.0 s",
            ])
        try roundTrips(
            frames.replyEnd(
                ReplyNarrator.Ending(outcome: .stopped, content: "x", chunks: 1, durationMs: 1), engine: "openai",
                at: 1))
    }

    @Test func agentCompleteAndError() throws {
        let long = String(repeating: "word ", count: 40)
        let completed = frames.end(
            ReplyNarrator.Ending(outcome: .completed, content: long, chunks: 9, durationMs: 800), engine: "offline")
        #expect(completed.frameType == FrameType.agentComplete)
        #expect(
            try completed.data()["payload"] == [
                "status": "completed", "summary": .string(String(long.prefix(120))), "chunks": 9, "durationMs": 800,
            ])
        let stopped = frames.end(
            ReplyNarrator.Ending(outcome: .stopped, content: "", chunks: 0, durationMs: 5), engine: "offline")
        #expect(try stopped.data()["payload"]?["status"] == "stopped")

        var failure = ProviderError(.http, "overloaded", status: 503)
        failure.retries = 2
        let failed = frames.end(
            ReplyNarrator.Ending(outcome: .failed(failure), content: "", chunks: 0, durationMs: 5), engine: "openai")
        #expect(failed.frameType == FrameType.agentError)
        let payload = AgentEvent.ErrorPayload(
            error: "overloaded", errorType: "http",
            context: .init(agentSource: "Kulu", conversationId: "c1", runId: "run-1", provider: "openai"),
            retryCount: 2)
        var data = try failed.data().objectValue ?? [:]
        #expect(data.removeValue(forKey: "timestamp") != nil)
        var expected = handBuilt(AgentEvent.error, payload: try JSONValue(encoding: payload)).objectValue ?? [:]
        expected.removeValue(forKey: "timestamp")
        #expect(data == expected)
        #expect(
            try failed.data()["payload"] == [
                "error": "overloaded", "error_type": "http", "retry_count": 2,
                "context": ["agent_source": "Kulu", "conversation_id": "c1", "run_id": "run-1", "provider": "openai"],
            ])
        try roundTrips(AgentError(ids: frames.ids, payload: payload, at: date))
    }

    @Test func workflowNodeProgress() throws {
        let node = WorkflowNodeTask(runId: "wf:r1", nodeId: "n1")
        let progress = LLMNodeProgress(node: node, delta: "lo", position: 3, text: "Hello", at: 1_700_000_000_123)
        #expect(progress.frameType == WorkflowNodeTask.progressFrame)
        #expect(
            try progress.data() == [
                "workflow_id": "wf:r1", "node_id": "n1", "status": "running", "delta": "lo", "position": 3,
                "partial_outputs": ["text": "Hello"],
                "timestamp": .string(WorkflowNodeTask.timestamp(1_700_000_000_123)),
            ])
        try roundTrips(progress)
    }
}
