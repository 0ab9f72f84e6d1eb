import Foundation
import SwitchboardContracts
import Testing

/// Each frame's `data` as a client receives it (the frame JSON has sorted keys).
private func rendered(_ payload: some FramePayload) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return "\(payload.frameType) \(String(decoding: try encoder.encode(payload.data()), as: UTF8.self))"
}

/// The orchestrator's collaboration frames, field for field as they were when built by hand.
@Suite struct CollaborationFrameTests {
    @Test func aRejectionSaysOnlyWhatItsReasonNeeds() throws {
        #expect(
            try rendered(
                MessageRejected(
                    conversationId: "c", messageId: "m2", clientMessageId: "k", reason: "duplicate", duplicateOf: "m1"))
                == #"MESSAGE_REJECTED {"clientMessageId":"k","conversationId":"c","duplicateOf":"m1","messageId":"m2","reason":"duplicate"}"#
        )
        #expect(
            try rendered(
                MessageRejected(
                    conversationId: "c", messageId: "m2", clientMessageId: "k", reason: "queue_full", runId: "m0",
                    limit: 20))
                == #"MESSAGE_REJECTED {"clientMessageId":"k","conversationId":"c","limit":20,"messageId":"m2","reason":"queue_full","runId":"m0"}"#
        )
    }

    @Test func theStartOfARunNamesItsRolesAndLead() throws {
        let start = CollaborationStart(
            conversationId: "c", runId: "m1", messageId: "m1", roles: ["Alex", "Catherine"], pattern: .sequential,
            reason: "long", estimatedDuration: 3000)
        #expect(
            try rendered(start)
                == #"COLLABORATION_START {"conversationId":"c","estimatedDuration":3000,"messageId":"m1","pattern":"sequential","reason":"long","roles":["Alex","Catherine"],"runId":"m1"}"#
        )
        var led = start
        led.lead = "Alex"
        #expect(try led.data()["lead"] == "Alex")
        #expect(
            try rendered(
                CollaborationInitiated(
                    conversationId: "c", runId: "m1", pattern: .parallel, participants: ["Alex"], estimatedDuration: 5))
                == #"COLLABORATION_INITIATED {"conversationId":"c","estimatedDuration":5,"participants":["Alex"],"pattern":"parallel","runId":"m1"}"#
        )
    }

    @Test func anAssignmentNestsItsTask() throws {
        #expect(
            try rendered(
                RoleAssigned(
                    conversationId: "c", runId: "m1", role: "Kulu", task: .init(id: "m1-kulu", description: "research"),
                    priority: 2, dependencies: ["Alex"]))
                == #"ROLE_ASSIGNED {"conversationId":"c","dependencies":["Alex"],"priority":2,"role":"Kulu","runId":"m1","task":{"description":"research","id":"m1-kulu"}}"#
        )
    }

    @Test func progressCarriesItsValueTwice() throws {
        #expect(
            try rendered(
                CollaborationProgress(
                    conversationId: "c", runId: "m1", progress: 42, currentStage: "ai_processing",
                    completedTasks: ["Alex"], activeTasks: ["Kulu"], pendingTasks: [], activeRole: "Kulu"))
                == #"COLLABORATION_PROGRESS {"activeRole":"Kulu","activeTasks":["Kulu"],"completedTasks":["Alex"],"conversationId":"c","currentStage":"ai_processing","overallProgress":42,"pendingTasks":[],"progress":42,"runId":"m1"}"#
        )
    }

    @Test func theCompletionListsContributionsWithTheirOptionalFields() throws {
        let result = CollaborationCompleted.Result(
            status: "partial", answer: "a", answeredBy: "", failedRoles: ["Mike"], note: "n")
        #expect(
            try rendered(
                CollaborationComplete(
                    conversationId: "c", runId: "m1", messageId: "m1", pattern: .direct, result: result,
                    contributions: [
                        RoleContribution(role: "Alex", status: "completed", content: "a", durationMs: 7),
                        RoleContribution(role: "Mike", status: "failed", content: "", error: "boom"),
                    ], duration: 12))
                == #"COLLABORATION_COMPLETE {"contributions":[{"content":"a","durationMs":7,"role":"Alex","status":"completed"},{"content":"","error":"boom","role":"Mike","status":"failed"}],"conversationId":"c","duration":12,"messageId":"m1","pattern":"direct","result":{"answer":"a","answeredBy":"","failedRoles":["Mike"],"note":"n","status":"partial"},"runId":"m1"}"#
        )
    }

    @Test func theFallbackReplyIsOneStartOneChunkOneEnd() throws {
        #expect(
            try rendered(
                MessageStreamStart(messageId: "reply-m1", conversationId: "c", role: "David", inReplyTo: "m1"))
                == #"MESSAGE_STREAM_START {"conversationId":"c","inReplyTo":"m1","messageId":"reply-m1","role":"David"}"#
        )
        #expect(
            try rendered(FallbackReplyChunk(messageId: "reply-m1", conversationId: "c", chunk: "text", role: "David"))
                == #"MESSAGE_STREAM_CHUNK {"chunk":"text","conversationId":"c","messageId":"reply-m1","position":0,"role":"David"}"#
        )
        let final = MessageStreamEnd.FinalMessage(id: "reply-m1", conversationId: "c", role: "David", content: "text")
        #expect(
            try rendered(
                MessageStreamEnd(
                    messageId: "reply-m1", finalMessage: final,
                    metadata: .init(chunks: 1, engine: "fallback", failedRole: "Catherine")))
                == #"MESSAGE_STREAM_END {"finalMessage":{"content":"text","conversationId":"c","id":"reply-m1","role":"David"},"messageId":"reply-m1","metadata":{"chunks":1,"engine":"fallback","failedRole":"Catherine"}}"#
        )
        #expect(
            try MessageStreamEnd(
                messageId: "reply-m1", finalMessage: final,
                metadata: .init(chunks: 1, engine: "none", status: "stopped")
            ).data()["metadata"] == ["chunks": 1, "engine": "none", "status": "stopped"])
    }
}

/// The workflow-runner's frames, snake_case as seed 003 names them.
@Suite struct WorkflowFrameTests {
    @Test func aNodeUpdateSaysWhatItsStatusKnows() throws {
        #expect(
            try rendered(
                NodeStatusUpdate(
                    workflowId: "r", nodeId: "greet", nodeType: "template", status: "running",
                    timestamp: "2026-01-01T00:00:00.000Z", inputs: ["name": "Ada"]))
                == #"node_status_update {"inputs":{"name":"Ada"},"node_id":"greet","node_type":"template","status":"running","timestamp":"2026-01-01T00:00:00.000Z","workflow_id":"r"}"#
        )
        #expect(
            try rendered(
                NodeStatusUpdate(
                    workflowId: "r", nodeId: "greet", nodeType: "template", status: "completed", timestamp: "t",
                    outputs: ["text": "hi"], elapsedMs: 3))
                == #"node_status_update {"elapsed_ms":3,"node_id":"greet","node_type":"template","outputs":{"text":"hi"},"status":"completed","timestamp":"t","workflow_id":"r"}"#
        )
    }

    @Test func answersToControlsAndInputs() throws {
        let refused = WorkflowRequestError(code: "not_paused", message: "the run is not paused")
        #expect(
            try rendered(
                WorkflowControlResult(
                    workflowId: "r", action: "resume", requestId: "q", success: false, status: "running",
                    timestamp: "t", error: refused))
                == #"workflow_control_result {"action":"resume","error":{"code":"not_paused","message":"the run is not paused"},"request_id":"q","status":"running","success":false,"timestamp":"t","workflow_id":"r"}"#
        )
        #expect(
            try rendered(HumanInputResponse(workflowId: "r", nodeId: "ask", requestId: "q", success: true))
                == #"human_input_response {"node_id":"ask","request_id":"q","success":true,"workflow_id":"r"}"#
        )
        // A runner that does not run the run answers an answer like a control.
        #expect(
            try rendered(
                HumanInputResponse(
                    workflowId: "r", action: "provide_input", requestId: "q", success: false, status: "completed",
                    error: .init(code: "not_running", message: "the run is completed, not running")))
                == #"human_input_response {"action":"provide_input","error":{"code":"not_running","message":"the run is completed, not running"},"request_id":"q","status":"completed","success":false,"workflow_id":"r"}"#
        )
        #expect(
            try rendered(HumanInputRequired(workflowId: "r", nodeId: "ask", prompt: "name?"))
                == #"human_input_required {"node_id":"ask","prompt":"name?","workflow_id":"r"}"#
        )
    }

    @Test func eachOutcomeCarriesTheSummary() throws {
        let summary = WorkflowRunSummary(totalNodes: 3, completed: 2, failed: 1, skipped: 0, pending: 0, elapsedMs: 9)
        let counts = #""summary":{"completed":2,"elapsed_ms":9,"failed":1,"pending":0,"skipped":0,"total_nodes":3}"#
        #expect(
            try rendered(
                WorkflowCompleted(
                    workflowId: "r", status: "completed", results: ["end": 1], summary: summary, timestamp: "t"))
                == #"workflow_completed {"results":{"end":1},"status":"completed","# + counts
                + #","timestamp":"t","workflow_id":"r"}"#
        )
        #expect(
            try rendered(
                WorkflowFailed(
                    workflowId: "r", status: "failed", error: "boom", nodeId: "n", summary: summary, timestamp: "t"))
                == #"workflow_failed {"error":"boom","node_id":"n","status":"failed","# + counts
                + #","timestamp":"t","workflow_id":"r"}"#
        )
        #expect(
            try rendered(WorkflowStopped(workflowId: "r", status: "stopped", summary: summary, timestamp: "t"))
                == #"workflow_stopped {"status":"stopped","# + counts + #","timestamp":"t","workflow_id":"r"}"#
        )
    }
}

@Suite struct ChannelMessagePayloadTests {
    /// A follower reads a channel event as its contract type, never by field name.
    @Test func aChannelEventReadsAsItsFramesPayload() throws {
        let start = MessageStreamStart(messageId: "reply-m1", conversationId: "c", role: "David", inReplyTo: "m1")
        let message = try ChannelEventFixtures.wire(start)
        #expect(message.payload(MessageStreamStart.self) == start)
        // Another frame type is not read as this one, even where the fields would fit.
        #expect(message.payload(MessageStreamEnd.self) == nil)
        #expect(
            try ChannelEventFixtures.wire(ChannelEventFixtures.completion).payload(CollaborationComplete.self)
                == ChannelEventFixtures.completion)
    }

    /// An agent's MESSAGE_STREAM_CHUNK and the orchestrator's own both read as the fields they share.
    @Test func everyReplyChunkReadsAsTheFieldsAllChunksCarry() throws {
        let agent = try ChannelEventFixtures.wire(ChannelEventFixtures.replyChunk("Hi", position: 4))
        #expect(
            agent.payload(FallbackReplyChunk.self)
                == FallbackReplyChunk(
                    messageId: "reply-r1", conversationId: "c", chunk: "Hi", position: 4, role: "David"))
        let fallback = try ChannelEventFixtures.wire(ChannelEventFixtures.fallbackChunk)
        #expect(fallback.payload(FallbackReplyChunk.self) == ChannelEventFixtures.fallbackChunk)
        // The orchestrator's chunk lacks the agent's run id and seed fields: it is not an agent's chunk.
        #expect(fallback.payload(MessageStreamChunk.self) == nil)
    }
}
