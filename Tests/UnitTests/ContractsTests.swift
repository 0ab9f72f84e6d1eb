import Foundation
import SwitchboardContracts
import Testing

@Suite struct EnvelopeTests {
    let source = EventSource(service: "gateway", instance: "gateway-1")

    @Test func roundTripsEveryField() throws {
        let payload = ChatMessageSubmitted(
            messageId: "m1", clientMessageId: "c1", conversationId: "conv-1", userId: "alice", content: "héllo 世界 👋🏽",
            gateway: "gateway-1")
        let envelope = Envelope(routingKey: "conv-1", source: source, payload: payload)
        let bytes = try EnvelopeCodec.encode(envelope)
        let decoded = try EnvelopeCodec.decode(ChatMessageSubmitted.self, from: bytes)
        #expect(decoded.id == envelope.id)
        #expect(decoded.type == "chat.message.submitted")
        #expect(decoded.schemaVersion == 1)
        #expect(decoded.time == envelope.time)
        #expect(decoded.routingKey == "conv-1")
        #expect(decoded.traceparent == envelope.traceparent)
        #expect(decoded.source == source)
        #expect(decoded.payload == payload)
        let header = try EnvelopeCodec.header(from: bytes)
        #expect(header.type == ChatMessageSubmitted.eventType)
    }

    @Test func anAgentTaskRepliesWhereItsRequesterSaysAndAnOlderOneToTheOrchestrator() throws {
        let task = AgentTaskRequested(
            taskId: "t1", conversationId: "run-1", userId: "u", replyMessageId: "t1", inReplyTo: "run-1", role: "assistant",
            prompt: "hi", replyTo: Topics.workflowCommands.name)
        let decoded = try EnvelopeCodec.decode(
            AgentTaskRequested.self, from: try EnvelopeCodec.encode(Envelope(routingKey: "run-1", source: source, payload: task)))
        #expect(decoded.payload.replyTopic == Topics.workflowCommands)
        // A task of a requester that predates replyTo: its bytes have no such field.
        var older = try JSONSerialization.jsonObject(
            with: Data(try EnvelopeCodec.encode(Envelope(routingKey: "c", source: source, payload: task)))) as! [String: Any]
        var payload = older["payload"] as! [String: Any]
        payload.removeValue(forKey: "replyTo")
        older["payload"] = payload
        let olderBytes = try JSONSerialization.data(withJSONObject: older)
        #expect(String(decoding: olderBytes, as: UTF8.self).contains("replyTo") == false)
        let olderTask = try EnvelopeCodec.decode(AgentTaskRequested.self, from: Array(olderBytes)).payload
        #expect(olderTask.replyTo == nil)
        #expect(olderTask.replyTopic == Topics.agentResults)
    }

    @Test func clientEventsKeepArbitraryData() throws {
        let event = ClientEvent(
            channel: .conversation("c-9"), frameType: FrameType.messageStreamChunk,
            data: ["chunk": "a b", "position": 3, "nested": ["ok": true, "list": [1, 2.5, nil]]])
        let bytes = try EnvelopeCodec.encode(Envelope(routingKey: "c-9", source: source, payload: event))
        #expect(try EnvelopeCodec.decode(ClientEvent.self, from: bytes).payload == event)
    }

    @Test func refusesTheWrongTypeAndGarbage() throws {
        let bytes = try EnvelopeCodec.encode(
            Envelope(routingKey: "k", source: source, payload: ClientEvent(channel: .system, frameType: "X", data: nil)))
        #expect(throws: ContractError.self) { try EnvelopeCodec.decode(ChatMessageSubmitted.self, from: bytes) }
        #expect(throws: ContractError.self) { try EnvelopeCodec.decode(ClientEvent.self, from: Array("{not json".utf8)) }
        #expect(throws: ContractError.self) { try EnvelopeCodec.header(from: Array("[]".utf8)) }
    }

    @Test func refusesANewerSchemaVersion() throws {
        var envelope = Envelope(routingKey: "k", source: source, payload: ClientEvent(channel: .system, frameType: "X", data: nil))
        envelope.schemaVersion = 2
        let bytes = try EnvelopeCodec.encode(envelope)
        #expect {
            try EnvelopeCodec.decode(ClientEvent.self, from: bytes)
        } throws: { error in
            (error as? ContractError)?.code == .unsupportedSchemaVersion
        }
    }

    @Test func traceparentsFollowW3C() {
        let parent = TraceContext.newTraceparent()
        let parts = parent.split(separator: "-")
        #expect(parts.count == 4 && parts[0] == "00" && parts[1].count == 32 && parts[2].count == 16)
        let child = TraceContext.child(of: parent)
        #expect(TraceContext.traceID(of: child) == TraceContext.traceID(of: parent))
        #expect(child != parent)
    }

    @Test(arguments: ["conversation:abc", "user:u-1", "system:all", "roles:c:1"])
    func channelsRoundTrip(_ text: String) throws {
        let channel = try #require(Channel(text))
        #expect(channel.description == text)
    }

    @Test(arguments: ["", "conversation", "conversation:", "nope:1"])
    func badChannelsAreRejected(_ text: String) {
        #expect(Channel(text) == nil)
    }
}

@Suite struct ChannelWireTests {
    @Test func stampsThePositionIntoTheFrame() throws {
        let frame = ServerFrame(id: "e1", type: "MESSAGE_STREAM_CHUNK", timestamp: 5, data: ["chunk": "hi there"])
        let json = try FrameEncoding.json(frame)
        let wire = ChannelWire.encode(
            .init(offset: 42, epoch: "ab12", frameType: frame.type, createdAt: 1_700_000_000_123_456, frameJSON: json))
        let message = try #require(ChannelWire.decode(Array(wire.utf8)))
        #expect(
            message
                == .init(
                    offset: 42, epoch: "ab12", frameType: "MESSAGE_STREAM_CHUNK", createdAt: 1_700_000_000_123_456,
                    frameJSON: json))
        let decoded = try JSONDecoder().decode(ServerFrame.self, from: Data(message.stampedJSON.utf8))
        #expect(decoded.offset == 42 && decoded.epoch == "ab12" && decoded.id == "e1" && decoded.data == frame.data)
    }

    @Test func ephemeralFramesAreNotStamped() {
        let message = ChannelWire.Message(offset: 0, epoch: "-", frameType: "TYPING_START", frameJSON: "{\"a\":1}")
        #expect(message.isEphemeral && message.stampedJSON == "{\"a\":1}")
    }

    @Test func garbageIsNotDecoded() {
        #expect(ChannelWire.decode(Array("nospace".utf8)) == nil)
        #expect(ChannelWire.decode(Array("x y T {}".utf8)) == nil)
        #expect(ChannelWire.decode(Array("1 e T".utf8)) == nil)
        #expect(ChannelWire.decode(Array("1 e T notatime {}".utf8)) == nil)
    }

    @Test(arguments: [("e1:42", "e1", Int64(42)), ("a:b:7", "a:b", 7), ("x:0", "x", 0)])
    func lastEventIDsParse(_ text: String, _ epoch: String, _ offset: Int64) {
        #expect(StreamPosition(lastEventID: text) == StreamPosition(epoch: epoch, offset: offset))
        #expect(StreamPosition(epoch: epoch, offset: offset).description == text)
    }

    @Test(arguments: ["", "42", ":42", "e:-1", "e:x"])
    func badLastEventIDsAreRejected(_ text: String) {
        #expect(StreamPosition(lastEventID: text) == nil)
    }

    @Test func keysShareAHashTag() {
        let channel = Channel.conversation("c1")
        for key in [ChannelWire.streamKey(channel), ChannelWire.metaKey(channel), ChannelWire.liveChannel(channel)] {
            #expect(key.contains("{conversation:c1}"))
        }
    }
}
