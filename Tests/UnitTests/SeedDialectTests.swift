import ArgumentParser
import Foundation
import SwitchboardContracts
import Testing

@testable import Gateway

/// Seed 000's SSE events and character offsets, and the sustained-excess rule behind close code 4504.
@Suite struct SeedDialectTests {
    static func message(_ type: String, _ data: JSONValue, offset: Int64 = 7) throws -> ChannelWire.Message {
        let frame = ServerFrame(id: "e1", type: type, timestamp: 1, data: data, channel: "conversation:c")
        return ChannelWire.Message(
            offset: offset, epoch: "ep", frameType: type, frameJSON: try FrameEncoding.json(frame))
    }

    @Test func positionsAreCharacterOffsetsAsJavaScriptCountsThem() {
        #expect(ChatCentreDialect.length("这是一个") == 4)
        #expect(ChatCentreDialect.length("示例消息") == 4)
        #expect(ChatCentreDialect.length("héllo") == 5)
        // Outside the BMP: two UTF-16 code units, as String.length in the seed's TypeScript.
        #expect(ChatCentreDialect.length("👍") == 2)
    }

    /// The seed's own example: `message_chunk {chunk: "这是一个", position: 0, total: -1}`.
    @Test func chunksAndTheEndBecomeTheSeedsEvents() throws {
        let chunk = try Self.message(
            FrameType.messageStreamChunk,
            ["messageId": "reply-m1", "chunk": "示例消息", "position": 4, "role": "Catherine", "event_type": "llm_chunk"])
        #expect(
            ChatCentreDialect.serverSentEvent(chunk)
                == "id: ep:7\nevent: message_chunk\n"
                + #"data: {"chunk":"示例消息","messageId":"reply-m1","position":4,"role":"Catherine","total":-1}"# + "\n\n")
        let end = try Self.message(
            FrameType.messageStreamEnd,
            [
                "messageId": "reply-m1", "finalMessage": ["content": "这是一个示例消息", "role": "Catherine"],
                "metadata": ["chunks": 2],
            ])
        #expect(
            ChatCentreDialect.serverSentEvent(end)
                == "id: ep:7\nevent: message_complete\n"
                + #"data: {"message":"这是一个示例消息","messageId":"reply-m1","metadata":{"chunks":2},"role":"Catherine"}"#
                + "\n\n")
    }

    @Test func otherEventsAreNamedInLowerCaseWithTheirDataAsIs() throws {
        let change = try Self.message(FrameType.roleStatusChange, ["role": "Alex", "status": "THINKING"])
        #expect(
            ChatCentreDialect.serverSentEvent(change) == "id: ep:7\nevent: role_status_change\n"
                + #"data: {"role":"Alex","status":"THINKING"}"# + "\n\n")
        // Ephemeral events have no position to resume from: no id.
        let typing = try Self.message("TYPING_START", ["userId": "u"], offset: 0)
        #expect(
            ChatCentreDialect.serverSentEvent(typing) == "event: typing_start\n" + #"data: {"userId":"u"}"# + "\n\n")
        #expect(ChatCentreDialect.eventName(FrameType.messageStreamStart) == "message_start")
    }

    /// The shared form is made once per event and is the same text a per-client rendering gives.
    @Test func theSSEFormIsCachedOnTheSharedEvent() throws {
        let event = HubEvent(try Self.message(FrameType.systemStatus, ["status": "operational"]))
        #expect(event.serverSentEvent == ChatCentreDialect.serverSentEvent(event.message))
        #expect(event.serverSentEvent == event.serverSentEvent)
    }

    /// Seed 000's graceful shutdown: 30 s unless configured.
    @Test func theShutdownWindowIsTheSeedsAndConfigurable() throws {
        #expect(try GatewaySettings.Options.parse([]).settings().shutdownWindow == .seconds(30))
        #expect(
            try GatewaySettings.Options.parse(["--shutdown-window-seconds", "2.5"]).settings().shutdownWindow
                == .milliseconds(2500))
        #expect(throws: (any Error).self) {
            try GatewaySettings.Options.parse(["--shutdown-window-seconds", "-1"]).settings()
        }
    }

    @Test func onlyASustainedExcessCloses() {
        var excess = SustainedExcess()
        let start = ContinuousClock.now
        func refuse(at time: Duration) -> Bool {
            excess.recordRefusal(at: start + time, window: .seconds(3), minimumRefusals: 20)
        }
        // A burst: 30 refusals within a second is not sustained.
        for n in 0..<30 { #expect(!refuse(at: .milliseconds(n * 30))) }
        // Refusals more than a second apart never add up, however long they go on.
        for n in 1...8 { #expect(!refuse(at: .seconds(2 * n))) }
        // Refused every 100 ms (whatever the bucket lets through between): closed once that lasted 3 s.
        let flood = Duration.seconds(30)
        for n in 0..<30 { #expect(!refuse(at: flood + .milliseconds(n * 100))) }
        #expect(refuse(at: flood + .seconds(3)))
    }
}
