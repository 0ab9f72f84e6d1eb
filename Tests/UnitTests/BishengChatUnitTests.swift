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
            data: ["messageId": "reply-m1", "role": "Catherine", "chunk": "Hi", "position": 0, "runId": "m1"])
        #expect(
            BishengFrames.translate(try wire(chunk))
                == #"{"data":{"chunk":"Hi","message_id":"reply-m1","position":0,"role":"Catherine"},"trace_id":"m1","type":"message"}"#
        )
        let end = ServerFrame(
            id: "2", type: FrameType.messageStreamEnd, timestamp: 0,
            data: [
                "messageId": "reply-m1", "finalMessage": ["role": "Catherine", "content": "Hi"],
                "metadata": ["status": "stopped"],
            ])
        #expect(
            BishengFrames.translate(try wire(end))
                == #"{"data":{"content":"Hi","message_id":"reply-m1","role":"Catherine","status":"stopped"},"trace_id":"m1","type":"result"}"#
        )
        let complete = ServerFrame(
            id: "3", type: FrameType.collaborationComplete, timestamp: 0,
            data: ["runId": "m1", "messageId": "m1", "result": ["status": "completed"]])
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
