import Foundation
import SwitchboardContracts
import Testing

@testable import Gateway

@Suite struct BishengFrameTests {
    private func wire(_ frame: ServerFrame) throws -> ChannelWire.Message {
        ChannelWire.Message(offset: 3, epoch: "e", frameType: frame.type, frameJSON: try FrameEncoding.json(frame))
    }

    @Test func replyEventsBecomeBishengFramesByteForByte() throws {
        let chunk = ServerFrame(
            id: "1", type: FrameType.messageStreamChunk, timestamp: 0,
            data: try MessageStreamChunk(
                ids: ReplyIDs(messageId: "reply-m1", conversationId: "c", role: "Catherine", runId: "m1"), chunk: "Hi",
                position: 0, isComplete: false
            ).data())
        #expect(
            BishengFrames.translate(try wire(chunk))
                == #"{"data":{"chunk":"Hi","message_id":"reply-m1","position":0,"role":"Catherine"},"trace_id":"m1","type":"message"}"#
        )
        let end = ServerFrame(
            id: "2", type: FrameType.messageStreamEnd, timestamp: 0,
            data: try MessageStreamEnd(
                messageId: "reply-m1",
                finalMessage: .init(id: "reply-m1", conversationId: "c", role: "Catherine", content: "Hi"),
                metadata: .init(chunks: 1, engine: "offline", status: "stopped")
            ).data())
        #expect(
            BishengFrames.translate(try wire(end))
                == #"{"data":{"content":"Hi","message_id":"reply-m1","role":"Catherine","status":"stopped"},"trace_id":"m1","type":"result"}"#
        )
        let complete = ServerFrame(
            id: "3", type: FrameType.collaborationComplete, timestamp: 0,
            data: try CollaborationComplete(
                conversationId: "c", runId: "m1", messageId: "m1", pattern: .direct,
                result: .init(status: "completed", answer: "Hi", answeredBy: "Catherine", failedRoles: [], note: ""),
                contributions: [], duration: 5
            ).data())
        #expect(
            BishengFrames.translate(try wire(complete))
                == #"{"data":{"message_id":"m1","status":"completed"},"trace_id":"m1","type":"end"}"#)
        let role = ServerFrame(
            id: "4", type: FrameType.roleStatusChange, timestamp: 0, data: ["role": "Alex", "status": "THINKING"])
        #expect(
            BishengFrames.translate(try wire(role))
                == #"{"data":{"event":"ROLE_STATUS_CHANGE","role":"Alex","status":"THINKING"},"trace_id":null,"type":"progress"}"#
        )
    }

    /// Every frame the services put on a conversation channel, as the seed's client gets it.
    @Test func theServicesFramesBecomeBishengFramesByteForByte() throws {
        typealias F = ChannelEventFixtures
        func bisheng(_ payload: some FramePayload) throws -> String { BishengFrames.translate(try F.wire(payload)) }
        let reply = F.ids("reply-r1", role: "Catherine")
        #expect(
            try bisheng(MessageStreamChunk(ids: reply, chunk: "Hi", position: 0, isComplete: false, firstTokenAt: 5))
                == #"{"data":{"chunk":"Hi","message_id":"reply-r1","position":0,"role":"Catherine"},"trace_id":"r1","type":"message"}"#
        )
        // A task outside a run: the trace is the message the reply answers.
        #expect(
            try bisheng(
                MessageStreamChunk(
                    ids: F.ids("reply-m9", role: "Catherine", run: ""), chunk: "Yo", position: 2, isComplete: true))
                == #"{"data":{"chunk":"Yo","message_id":"reply-m9","position":2,"role":"Catherine"},"trace_id":"m9","type":"message"}"#
        )
        #expect(
            try bisheng(
                ChannelEventFixtures.fallbackChunk)
                == #"{"data":{"chunk":"in place","message_id":"reply-r1","position":0,"role":"David"},"trace_id":"r1","type":"message"}"#
        )
        let final = MessageStreamEnd.FinalMessage(
            id: "reply-r1", conversationId: "c", role: "Catherine", content: "Hi there", createdAt: 1)
        #expect(
            try bisheng(
                MessageStreamEnd(
                    messageId: "reply-r1", finalMessage: final,
                    metadata: .init(chunks: 2, durationMs: 30, engine: "offline")))
                == #"{"data":{"content":"Hi there","message_id":"reply-r1","role":"Catherine","status":"completed"},"trace_id":"r1","type":"result"}"#
        )
        #expect(
            try bisheng(
                MessageStreamEnd(
                    messageId: "reply-r1", finalMessage: final,
                    metadata: .init(chunks: 1, engine: "offline", status: "failed", error: "boom")))
                == #"{"data":{"content":"Hi there","message_id":"reply-r1","role":"Catherine","status":"failed"},"trace_id":"r1","type":"result"}"#
        )
        #expect(
            try bisheng(F.completion)
                == #"{"data":{"message_id":"m1","status":"partial"},"trace_id":"r1","type":"end"}"#)
        #expect(
            try bisheng(F.agentError)
                == #"{"data":{"code":"AGENT_ERROR","message":"provider down","role":"Kulu"},"trace_id":"r1","type":"error"}"#
        )
        #expect(
            try bisheng(
                MessageRejected(
                    conversationId: "c", messageId: "m2", clientMessageId: "k2", reason: "busy", runId: "r1"))
                == #"{"data":{"code":"BUSY","message":"the session is answering another message","message_id":"m2"},"trace_id":"r1","type":"error"}"#
        )
        #expect(
            try bisheng(
                MessageRejected(
                    conversationId: "c", messageId: "m2", clientMessageId: "k2", reason: "duplicate", duplicateOf: "m1")
            )
                == #"{"data":{"code":"BUSY","message":"the session is answering another message","message_id":"m2"},"trace_id":null,"type":"error"}"#
        )
        // Everything else is `progress`, its fields as they came and the frame type as `event`.
        #expect(
            try bisheng(
                MessageStreamStart(messageId: "reply-r1", conversationId: "c", role: "Catherine", inReplyTo: "m1"))
                == #"{"data":{"conversationId":"c","event":"MESSAGE_STREAM_START","inReplyTo":"m1","messageId":"reply-r1","role":"Catherine"},"trace_id":"m1","type":"progress"}"#
        )
        #expect(
            try bisheng(
                RoleStatusChange(
                    conversationId: "c", role: "Alex", status: "THINKING", previousStatus: "ANALYZING", reason: "r"))
                == #"{"data":{"conversationId":"c","event":"ROLE_STATUS_CHANGE","previousStatus":"ANALYZING","reason":"r","role":"Alex","status":"THINKING"},"trace_id":null,"type":"progress"}"#
        )
        #expect(
            try bisheng(
                AgentStart(
                    ids: F.ids("reply-r1-alex", role: "Alex"), payload: AgentStartPayload(taskDescription: "plan"),
                    at: F.eventTime))
                == #"{"data":{"agent_source":"Alex","conversationId":"c","event":"AGENT_START","event_type":"agent_start","messageId":"reply-r1-alex","payload":{"status":"started","task_description":"plan"},"role":"Alex","runId":"r1","timestamp":"2025-11-21T23:00:01.500Z"},"trace_id":"r1","type":"progress"}"#
        )
    }

    @Test func chatLimitsComeFromTheEnvironment() throws {
        let settings = try BishengChatSettings.fromEnvironment([
            "SWITCHBOARD_GATEWAY_CHAT_CONNECTION_TIMEOUT_SECONDS": "1.5", "SWITCHBOARD_GATEWAY_CHAT_MAX_SESSIONS": "7",
        ])
        #expect(settings.connectionTimeout == .milliseconds(1500) && settings.maxConcurrentSessions == 7)
        #expect(try BishengChatSettings.fromEnvironment([:]) == BishengChatSettings())
        #expect(throws: (any Error).self) {
            try BishengChatSettings.fromEnvironment(["SWITCHBOARD_GATEWAY_CHAT_MAX_SESSIONS": "0"])
        }
    }
}
