import Foundation
import SwitchboardContracts
import Testing

@testable import Gateway

/// The compatible front doors' translations of channel events, checked on exact frames.
@Suite struct FrontDoorTranslationTests {
    static let team = TeamCard(
        name: "chat-centre",
        roles: ["Alex", "Kulu", "Mike", "Emma", "David", "Catherine"].map {
            TeamCard.Role(name: $0, responsibility: "r")
        },
        finalRole: "Catherine")

    static func message(_ offset: Int64, _ type: String, _ data: JSONValue) -> ChannelWire.Message {
        let frame = ServerFrame(
            id: "f\(offset)", type: type, timestamp: 1_763_766_000_000, data: data, channel: "conversation:c")
        return ChannelWire.Message(
            offset: offset, epoch: "e1", frameType: type, frameJSON: try! FrameEncoding.json(frame))
    }

    static func json(_ text: String) -> JSONValue? { try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) }

    @Test func modelsNameTheTeamAPatternAndALead() {
        typealias Choice = OpenAICompatibility.ModelChoice
        #expect(Choice.parse("chat-centre", team: Self.team) == Choice())
        #expect(Choice.parse("Chat-Centre/parallel", team: Self.team) == Choice(pattern: .parallel))
        #expect(Choice.parse("chat-centre/mike", team: Self.team) == Choice(lead: "Mike"))
        #expect(Choice.parse("chat-centre/direct/Emma", team: Self.team) == Choice(pattern: .direct, lead: "Emma"))
        for bad in ["gpt-4o", "chat-centre/", "chat-centre/Zed", "chat-centre/Mike/parallel", "chat-centre/a/b/c", ""] {
            #expect(Choice.parse(bad, team: Self.team) == nil, "\(bad)")
        }
        #expect(Choice.all(Self.team).count == 1 + 5 + 6)
    }

    @Test func tokensAreWordsAndCJKCharacters() {
        #expect(TokenEstimate.count("hello there") == 2)
        #expect(TokenEstimate.count("  你好 world ") == 3)
        #expect(TokenEstimate.count("") == 0)
    }

    @Test func completionChunksFollowOpenAIsStreamShape() throws {
        let translator = CompletionTranslator(runID: "r1", model: "chat-centre", includeUsage: true, promptTokens: 4)
        let opening = try #require(Self.json(String(translator.opening().dropFirst(6))))
        #expect(opening["object"] == "chat.completion.chunk" && opening["id"] == "chatcmpl-r1")
        #expect(opening["choices"]?[0]?["delta"] == ["role": "assistant", "content": ""])
        #expect(opening["usage"] == .null)
        // Another run's chunks and other frames are not shown.
        #expect(
            translator.chunks(
                for: try ChannelEventFixtures.wire(ChannelEventFixtures.replyChunk("x", reply: "reply-r0"), offset: 1)
            ).isEmpty)
        #expect(
            translator.chunks(for: Self.message(2, FrameType.agentChunk, ["messageId": "reply-r1-alex", "chunk": "x"]))
                .isEmpty)
        let text = translator.chunks(
            for: try ChannelEventFixtures.wire(ChannelEventFixtures.replyChunk("Hello ", reply: "reply-r1"), offset: 3))
        #expect(text.hasPrefix("data: ") && text.hasSuffix("\n\n"))
        #expect(Self.json(String(text.dropFirst(6)))?["choices"]?[0]?["delta"]?["content"] == "Hello ")
        #expect(!translator.isDone)
        let end = translator.chunks(
            for: try ChannelEventFixtures.wire(
                ChannelEventFixtures.completion(run: "r1", answer: "Hello world"), offset: 4))
        let events = end.components(separatedBy: "\n\n").filter { !$0.isEmpty }.compactMap {
            Self.json(String($0.dropFirst(6)))
        }
        #expect(events.count == 2)
        #expect(events[0]["choices"]?[0]?["finish_reason"] == "stop" && events[0]["choices"]?[0]?["delta"] == [:])
        #expect(
            events[1]["choices"] == []
                && events[1]["usage"] == ["prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5])
        #expect(translator.isDone)
        // Nothing after the end.
        #expect(
            translator.chunks(
                for: try ChannelEventFixtures.wire(
                    ChannelEventFixtures.replyChunk("late", reply: "reply-r1"), offset: 5)
            ).isEmpty)
    }

    @Test func aCompletionWithoutAStreamedReplyAnswersWithTheResult() throws {
        let translator = CompletionTranslator(runID: "r1", model: "m", includeUsage: false, promptTokens: 1)
        #expect(translator.completion() == nil)
        _ = translator.observe(
            try ChannelEventFixtures.wire(
                ChannelEventFixtures.completion(run: "r1", answer: "the team's answer"), offset: 1))
        let completion = try JSONValueEncoder().encode(try #require(translator.completion()))
        #expect(completion["object"] == "chat.completion")
        #expect(completion["choices"]?[0]?["message"] == ["role": "assistant", "content": "the team's answer"])
        #expect(completion["usage"]?["completion_tokens"] == 3)
    }

    @Test func bluePlanEventsCarrySeedFieldsAndPositions() throws {
        let translator = BluePlanTranslator(mode: .nova, runID: "r1")
        let start = translator.event(
            for: Self.message(
                7, FrameType.collaborationStart,
                try ChannelEventFixtures.start.data()))
        #expect(start.hasPrefix("id: e1:7\ndata: "))
        let startEvent = try #require(Self.json(String(start.split(separator: "\n")[1].dropFirst(6))))
        #expect(startEvent["event_type"] == "agent_start" && startEvent["agent_source"] == "nova3_supervisor")
        #expect(startEvent["payload"]?["agents"] == ["Alex", "Kulu"])
        // A role's event passes through with its seed fields; other runs and other frames do not.
        let chunk = translator.event(
            for: Self.message(
                8, FrameType.agentChunk,
                [
                    "runId": "r1", "event_type": "llm_chunk", "agent_source": "Alex",
                    "timestamp": "2025-11-21T00:00:00.000Z",
                    "payload": ["content": "hi", "content_type": "text", "is_complete": false], "chunk": "hi",
                ]))
        let chunkEvent = try #require(Self.json(String(chunk.split(separator: "\n")[1].dropFirst(6))))
        #expect(
            chunkEvent == [
                "event_type": "llm_chunk", "agent_source": "Alex", "timestamp": "2025-11-21T00:00:00.000Z",
                "payload": ["content": "hi", "content_type": "text", "is_complete": false],
            ])
        #expect(
            translator.event(for: Self.message(9, FrameType.agentChunk, ["runId": "r0", "event_type": "llm_chunk"]))
                .isEmpty)
        #expect(
            translator.event(for: Self.message(10, FrameType.roleStatusChange, ["runId": "r1", "role": "Alex"])).isEmpty
        )
        // The orchestrator's fallback reply (no runId, no seed fields) is an llm_chunk of its role.
        let fallback = translator.event(
            for: Self.message(
                11, FrameType.messageStreamChunk,
                try ChannelEventFixtures.fallbackChunk.data()))
        #expect(Self.json(String(fallback.split(separator: "\n")[1].dropFirst(6)))?["agent_source"] == "David")
        let end = translator.event(
            for: Self.message(
                12, FrameType.collaborationComplete, try ChannelEventFixtures.completion.data()))
        let endEvent = try #require(Self.json(String(end.split(separator: "\n")[1].dropFirst(6))))
        #expect(endEvent["event_type"] == "agent_complete" && endEvent["payload"]?["status"] == "partial")
        #expect(endEvent["payload"]?["failed_agents"] == ["Kulu"])
        #expect(translator.isDone)
    }

    /// A run's frames as the services send them, as seed 001's client gets them.
    @Test func theServicesFramesBecomeBluePlanEventsByteForByte() throws {
        typealias F = ChannelEventFixtures
        let translator = BluePlanTranslator(mode: .nova, runID: "r1")
        var offset: Int64 = 6
        func bluePlan(_ payload: some FramePayload) throws -> String {
            offset += 1
            return translator.event(for: try F.wire(payload, offset: offset))
        }
        func sse(_ offset: Int64, _ json: String) -> String { "id: e1:\(offset)\ndata: \(json)\n\n" }
        #expect(
            try bluePlan(
                ChannelEventFixtures.start)
                == sse(
                    7,
                    #"{"agent_source":"nova3_supervisor","event_type":"agent_start","payload":{"agents":["Alex","Kulu"],"pattern":"parallel","status":"started","task_description":"parallel: Alex, Kulu"},"timestamp":"2025-11-21T23:00:00.000Z"}"#
                ))
        let alex = F.ids("reply-r1-alex", role: "Alex")
        #expect(
            try bluePlan(AgentStart(ids: alex, payload: AgentStartPayload(taskDescription: "plan"), at: F.eventTime))
                == sse(
                    8,
                    #"{"agent_source":"Alex","event_type":"agent_start","payload":{"status":"started","task_description":"plan"},"timestamp":"2025-11-21T23:00:01.500Z"}"#
                ))
        #expect(
            try bluePlan(
                AgentChunk(ids: alex, chunk: "hi", position: 0, isComplete: false, firstTokenAt: 5, at: F.eventTime))
                == sse(
                    9,
                    #"{"agent_source":"Alex","event_type":"llm_chunk","payload":{"content":"hi","content_type":"text","is_complete":false},"timestamp":"2025-11-21T23:00:01.500Z"}"#
                ))
        #expect(
            try bluePlan(
                AgentComplete(
                    ids: alex,
                    payload: AgentCompletePayload(status: "completed", summary: "hi", chunks: 1, durationMs: 40),
                    at: F.eventTime))
                == sse(
                    10,
                    #"{"agent_source":"Alex","event_type":"agent_complete","payload":{"chunks":1,"durationMs":40,"status":"completed","summary":"hi"},"timestamp":"2025-11-21T23:00:01.500Z"}"#
                ))
        #expect(
            try bluePlan(F.agentError)
                == sse(
                    11,
                    #"{"agent_source":"Kulu","event_type":"error","payload":{"context":{"agent_source":"Kulu","conversation_id":"c","run_id":"r1"},"error":"provider down","error_type":"provider_error","retry_count":3},"timestamp":"2025-11-21T23:00:01.500Z"}"#
                ))
        #expect(
            try bluePlan(
                MessageStreamChunk(
                    ids: F.ids("reply-r1", role: "Catherine"), chunk: "Done.", position: 0, isComplete: true,
                    at: F.eventTime))
                == sse(
                    12,
                    #"{"agent_source":"Catherine","event_type":"llm_chunk","payload":{"content":"Done.","content_type":"text","is_complete":true},"timestamp":"2025-11-21T23:00:01.500Z"}"#
                ))
        // The orchestrator's fallback reply carries no seed fields: an llm_chunk of its role at the frame's time.
        #expect(
            try bluePlan(
                ChannelEventFixtures.fallbackChunk)
                == sse(
                    13,
                    #"{"agent_source":"David","event_type":"llm_chunk","payload":{"content":"in place","content_type":"text","is_complete":true},"timestamp":"2025-11-21T23:00:00.000Z"}"#
                ))
        // Frames that are not the run's own events are not shown.
        #expect(
            try bluePlan(
                MessageStreamStart(messageId: "reply-r1", conversationId: "c", role: "Catherine", inReplyTo: "m1")
            )
            .isEmpty)
        #expect(
            try bluePlan(F.completion)
                == sse(
                    15,
                    #"{"agent_source":"nova3_supervisor","event_type":"agent_complete","payload":{"duration_ms":1200,"failed_agents":["Kulu"],"note":"Kulu failed","status":"partial","summary":"done"},"timestamp":"2025-11-21T23:00:00.000Z"}"#
                ))
        #expect(translator.isDone)
    }

    @Test func aResumedBluePlanStreamFollowsTheFirstRunItSees() {
        let translator = BluePlanTranslator(mode: .loomi, runID: nil)
        #expect(
            !translator.event(
                for: Self.message(
                    3, FrameType.agentStart,
                    [
                        "runId": "r2", "event_type": "agent_start", "agent_source": "Kulu",
                        "timestamp": "2025-11-21T00:00:00.000Z", "payload": [:],
                    ])
            ).isEmpty)
        #expect(
            translator.event(
                for: Self.message(
                    4, FrameType.agentStart,
                    [
                        "runId": "r3", "event_type": "agent_start", "agent_source": "Kulu",
                        "timestamp": "2025-11-21T00:00:00.000Z", "payload": [:],
                    ])
            ).isEmpty)
    }
}
