import Foundation
import SwitchboardContracts
import SwitchboardStore
import SwitchboardWorkflow
import Testing

@testable import Gateway

/// The gateway's REST bodies and dialect frames, byte for byte as they were when built by hand.
@Suite struct GatewayBodyTests {
    static let session = SessionRecord(
        chatId: "c", userId: "u", chatType: "normal", topic: "t", createdAt: 1_700_000_000_000_000,
        updatedAt: 1_700_000_001_000_000)
    static let message = MessageRecord(
        seq: 1, id: "m1", chatId: "c", flowId: nil, chatType: "normal", userId: "u", isBot: false, author: "ann",
        content: "hi", extra: #"{"a":1}"#, source: 1, runId: nil, status: nil, usage: nil,
        createdAt: 1_700_000_002_000_000)

    @Test func theChatCentresHistoryIsCamelCaseWithNulls() throws {
        var untitled = Self.session
        untitled.topic = nil
        #expect(
            try sortedJSON(CentreConversation(untitled))
                == #"{"createdAt":1700000000000,"id":"c","messageCount":0,"state":"initialised","title":null,"type":"normal","updatedAt":1700000001000}"#
        )
        #expect(
            try sortedJSON(StoredMessage(Self.message))
                == #"{"author":"ann","content":"hi","conversationId":"c","createdAt":1700000002000,"extra":{"a":1},"id":"m1","role":"user","runId":null,"status":null,"usage":null}"#
        )
        #expect(
            try sortedJSON(CentreConversationPage(conversations: [], nextCursor: nil, hasMore: false))
                == #"{"conversations":[],"hasMore":false,"nextCursor":null}"#)
        #expect(
            try sortedJSON(CentreMessagePage(messages: [], nextCursor: "x", hasMore: true))
                == #"{"hasMore":true,"messages":[],"nextCursor":"x"}"#)
        #expect(
            try sortedJSON(APIErrorBody(code: "NOT_FOUND", message: "gone"))
                == #"{"error":{"code":"NOT_FOUND","message":"gone"}}"#)
    }

    @Test func bishengsHistoryIsSnakeCaseWithNulls() throws {
        let created = HistoryRoutes.iso(Self.session.createdAt)
        let updated = HistoryRoutes.iso(Self.session.updatedAt)
        #expect(
            try sortedJSON(BishengSession(Self.session))
                == #"{"chat_id":"c","chat_type":"normal","create_time":"\#(created)","flow_id":null,"id":"c","logo":null,"message_count":0,"session_id":"c","state":"initialised","topic":"t","update_time":"\#(updated)","user_id":"u"}"#
        )
        #expect(
            try sortedJSON(BishengMessage(Self.message))
                == #"{"chat_id":"c","chat_type":"normal","create_time":"\#(HistoryRoutes.iso(Self.message.createdAt))","extra":"{\"a\":1}","flow_id":null,"id":"m1","is_bot":false,"message":"hi","sender":"ann","source":1,"status":null,"usage":null,"user_id":"u"}"#
        )
        #expect(
            try sortedJSON(BishengPage<BishengSession>(list: [], nextCursor: nil, hasMore: false))
                == #"{"has_more":false,"list":[],"next_cursor":null}"#)
        #expect(try sortedJSON(BishengSessionDeleted(sessionID: "c")) == #"{"deleted":true,"session_id":"c"}"#)
        #expect(try sortedJSON(BishengMessageDeleted(messageID: "m")) == #"{"deleted":true,"message_id":"m"}"#)
        #expect(
            try sortedJSON(
                BishengStatistics(
                    sessionCount: 1, messageCount: 5, userMessageCount: 3, botMessageCount: 2,
                    sessionsByType: ["normal": 1]))
                == #"{"bot_message_count":2,"message_count":5,"session_count":1,"sessions_by_type":{"normal":1},"user_message_count":3}"#
        )
        #expect(try sortedJSON(BishengMessageCount(count: 4)) == #"{"count":4}"#)
        #expect(try sortedJSON(BishengMessageCount(count: 4, chatID: "c")) == #"{"chat_id":"c","count":4}"#)
    }

    @Test func bishengsOwnFramesKeepTheirShape() {
        #expect(
            BishengFrames.json(
                type: "start",
                data: BishengFrames.Start(chatID: "c", flowID: "f", session: Self.session, replayed: nil),
                traceID: nil)
                == #"{"data":{"chat_id":"c","chat_type":"normal","flow_id":"f","message_count":0,"resumed":false,"state":"initialised"},"trace_id":null,"type":"start"}"#
        )
        var begun = Self.session
        begun.messageCount = 2
        #expect(
            BishengFrames.json(
                type: "start", data: BishengFrames.Start(chatID: "c", flowID: "f", session: begun, replayed: true),
                traceID: nil)
                == #"{"data":{"chat_id":"c","chat_type":"normal","flow_id":"f","message_count":2,"replayed":true,"resumed":true,"state":"initialised"},"trace_id":null,"type":"start"}"#
        )
        #expect(
            BishengFrames.json(
                type: "progress", data: BishengFrames.Progress(stage: "accepted", messageID: "m", chatID: "c"),
                traceID: "t")
                == #"{"data":{"chat_id":"c","message_id":"m","stage":"accepted"},"trace_id":"t","type":"progress"}"#)
        #expect(
            BishengFrames.json(type: "progress", data: BishengFrames.Progress(stage: "pong"), traceID: nil)
                == #"{"data":{"stage":"pong"},"trace_id":null,"type":"progress"}"#)
        #expect(
            BishengFrames.json(
                type: "interrupt", data: BishengFrames.ChatStatus(chatID: "c", status: "stopping"), traceID: "t")
                == #"{"data":{"chat_id":"c","status":"stopping"},"trace_id":"t","type":"interrupt"}"#)
        #expect(
            BishengFrames.json(type: "end", data: BishengFrames.ChatState(chatID: "c", state: "ended"), traceID: nil)
                == #"{"data":{"chat_id":"c","state":"ended"},"trace_id":null,"type":"end"}"#)
        #expect(
            BishengFrames.error(code: "X", message: "m", traceID: nil)
                == #"{"data":{"code":"X","message":"m"},"trace_id":null,"type":"error"}"#)
    }

    @Test func workflowRunsAreShownWithTheirNodesOnlyWhenAsked() throws {
        var record = WorkflowRunRecord(
            runId: "r", userId: "u", sessionId: "s", status: .running,
            workflow: WorkflowDefinition(id: "w", nodes: [WorkflowNode(id: "start", type: "start")], connections: []),
            inputs: [:], createdAt: 1000, updatedAt: 2000)
        let (created, updated) = (WorkflowTime.iso(1000), WorkflowTime.iso(2000))
        #expect(
            try sortedJSON(WorkflowRunBody(record))
                == #"{"created_at":"\#(created)","node_count":1,"run_id":"r","session_id":"s","status":"running","updated_at":"\#(updated)","workflow_id":"w"}"#
        )
        record.error = "boom"
        record.results = ["x": "y"]
        let checkpoints = [
            "start": NodeCheckpoint(status: .completed, outputs: ["value": 1], startedAt: 10, finishedAt: 25),
            "end": NodeCheckpoint(status: .pending),
        ]
        #expect(
            try sortedJSON(WorkflowRunBody(record, checkpoints: checkpoints))
                == #"{"created_at":"\#(created)","error":"boom","node_count":1,"nodes":{"end":{"status":"pending"},"start":{"elapsed_ms":15,"outputs":{"value":1},"status":"completed"}},"results":{"x":"y"},"run_id":"r","session_id":"s","status":"running","updated_at":"\#(updated)","workflow":{"connections":[],"id":"w","nodes":[{"config":{},"id":"start","type":"start"}]},"workflow_id":"w"}"#
        )
        #expect(
            try sortedJSON(WorkflowRunPage(runs: [], total: 0, offset: 0, limit: 20, hasMore: false))
                == #"{"has_more":false,"limit":20,"offset":0,"runs":[],"total":0}"#)
        #expect(
            try sortedJSON(WorkflowInputSubmitted(workflowId: "w", runId: "r", requestId: "q"))
                == #"{"request_id":"q","run_id":"r","status":"submitted","workflow_id":"w"}"#)
    }

    @Test func openAIsBodiesKeepOpenAIsNulls() throws {
        #expect(
            try sortedJSON(ModelList(data: [.init(id: "chat-centre")]))
                == #"{"data":[{"created":0,"id":"chat-centre","object":"model","owned_by":"switchboard"}],"object":"list"}"#
        )
        #expect(
            try sortedJSON(OpenAIErrorBody("m", type: "invalid_request_error", param: nil, code: nil))
                == #"{"error":{"code":null,"message":"m","param":null,"type":"invalid_request_error"}}"#)
        #expect(
            try sortedJSON(OpenAIErrorBody("m", type: "t", param: "model", code: "c"))
                == #"{"error":{"code":"c","message":"m","param":"model","type":"t"}}"#)
    }

    @Test func completionChunksAreOpenAIsBytes() throws {
        let translator = CompletionTranslator(runID: "r1", model: "m", includeUsage: true, promptTokens: 4)
        let base = #""created":\#(translator.created),"id":"chatcmpl-r1","model":"m","object":"chat.completion.chunk""#
        #expect(
            translator.opening()
                == #"data: {"choices":[{"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0}],\#(base),"usage":null}"#
                + "\n\n")
        let end = translator.chunks(
            for: try ChannelEventFixtures.wire(ChannelEventFixtures.completion(run: "r1", answer: "Hello"), offset: 4))
        #expect(
            end
                == #"data: {"choices":[{"delta":{"content":"Hello"},"finish_reason":null,"index":0}],\#(base),"usage":null}"#
                + "\n\n"
                + #"data: {"choices":[{"delta":{},"finish_reason":"stop","index":0}],\#(base),"usage":null}"# + "\n\n"
                + #"data: {"choices":[],\#(base),"usage":{"completion_tokens":1,"prompt_tokens":4,"total_tokens":5}}"#
                + "\n\n")
        let plain = CompletionTranslator(runID: "r2", model: "m", includeUsage: false, promptTokens: 1)
        #expect(
            plain.opening()
                == #"data: {"choices":[{"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0}],"created":\#(plain.created),"id":"chatcmpl-r2","model":"m","object":"chat.completion.chunk"}"#
                + "\n\n")
        _ = plain.observe(
            try ChannelEventFixtures.wire(
                ChannelEventFixtures.completion(run: "r2", answer: "the team's answer"), offset: 1))
        #expect(
            try sortedJSON(try #require(plain.completion()))
                == #"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"the team's answer","role":"assistant"}}],"created":\#(plain.created),"id":"chatcmpl-r2","model":"m","object":"chat.completion","usage":{"completion_tokens":3,"prompt_tokens":1,"total_tokens":4}}"#
        )
    }

    @Test func bluePlansRunEventsAreSeedEvents() throws {
        let translator = BluePlanTranslator(mode: .nova, runID: "r1")
        let time = AgentEvent.isoTimestamp(Date(timeIntervalSince1970: 1_763_766_000))
        func data(_ event: String) -> String { String(event.split(separator: "\n")[1].dropFirst(6)) }
        let start = translator.event(
            for: FrontDoorTranslationTests.message(
                7, FrameType.collaborationStart,
                try ChannelEventFixtures.start.data()))
        #expect(
            data(start)
                == #"{"agent_source":"nova3_supervisor","event_type":"agent_start","payload":{"agents":["Alex","Kulu"],"pattern":"parallel","status":"started","task_description":"parallel: Alex, Kulu"},"timestamp":"\#(time)"}"#
        )
        let fallback = translator.event(
            for: FrontDoorTranslationTests.message(
                8, FrameType.messageStreamChunk,
                try ChannelEventFixtures.fallbackChunk.data()))
        #expect(
            data(fallback)
                == #"{"agent_source":"David","event_type":"llm_chunk","payload":{"content":"in place","content_type":"text","is_complete":true},"timestamp":"\#(time)"}"#
        )
        let end = translator.event(
            for: FrontDoorTranslationTests.message(
                9, FrameType.collaborationComplete,
                try CollaborationComplete(
                    conversationId: "c", runId: "r1", messageId: "m1", pattern: .parallel,
                    result: .init(
                        status: "partial", answer: "done", answeredBy: "Catherine", failedRoles: ["Kulu"], note: ""),
                    contributions: [], duration: 0
                ).data()))
        #expect(
            data(end)
                == #"{"agent_source":"nova3_supervisor","event_type":"agent_complete","payload":{"duration_ms":0,"failed_agents":["Kulu"],"note":"","status":"partial","summary":"done"},"timestamp":"\#(time)"}"#
        )
    }
}
