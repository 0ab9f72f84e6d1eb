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
            taskId: "t1", conversationId: "run-1", userId: "u", replyMessageId: "t1", inReplyTo: "run-1",
            role: "assistant",
            prompt: "hi", replyTo: Topics.workflowCommands.name)
        let decoded = try EnvelopeCodec.decode(
            AgentTaskRequested.self,
            from: try EnvelopeCodec.encode(Envelope(routingKey: "run-1", source: source, payload: task)))
        #expect(decoded.payload.replyTopic == Topics.workflowCommands)
        // A task of a requester that predates replyTo: its bytes have no such field.
        var older =
            try JSONSerialization.jsonObject(
                with: Data(try EnvelopeCodec.encode(Envelope(routingKey: "c", source: source, payload: task))))
            as! [String: Any]
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
            Envelope(routingKey: "k", source: source, payload: ClientEvent(channel: .system, frameType: "X", data: nil))
        )
        #expect(throws: ContractError.self) { try EnvelopeCodec.decode(ChatMessageSubmitted.self, from: bytes) }
        #expect(throws: ContractError.self) {
            try EnvelopeCodec.decode(ClientEvent.self, from: Array("{not json".utf8))
        }
        #expect(throws: ContractError.self) { try EnvelopeCodec.header(from: Array("[]".utf8)) }
    }

    @Test func refusesANewerSchemaVersion() throws {
        var envelope = Envelope(
            routingKey: "k", source: source, payload: ClientEvent(channel: .system, frameType: "X", data: nil))
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
        #expect(TraceContext.traceID(of: parent) == String(parts[1]))
        #expect(TraceContext.newTraceparent() != parent)
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

    @Test func ephemeralEventsAreEncodedFromTheFramesBytes() throws {
        let bytes = ChannelWire.encodeEphemeral(
            frameType: "TYPING_START", createdAt: 7, traceparent: nil, frameJSON: Array("{\"a\": 1}".utf8))
        #expect(String(decoding: bytes, as: UTF8.self) == "0 - TYPING_START 7 - {\"a\": 1}")
        let message = try #require(ChannelWire.decode(bytes))
        #expect(
            message
                == .init(
                    offset: 0, epoch: ChannelWire.ephemeralEpoch, frameType: "TYPING_START", createdAt: 7,
                    frameJSON: "{\"a\": 1}"))
    }

    /// The notifier's script publishes the form Swift decodes: the same fields, in the same order.
    @Test func theLuaFormIsTheSameForm() {
        let lua = ChannelWire.luaExpression(
            offset: "offset", epoch: "epoch", frameType: "ARGV[6]", createdAt: "ARGV[7]", traceparent: "ARGV[9]",
            frameJSON: "ARGV[1]")
        #expect(lua == "offset .. ' ' .. epoch .. ' ' .. ARGV[6] .. ' ' .. ARGV[7] .. ' ' .. ARGV[9] .. ' ' .. ARGV[1]")
    }

    /// The span that published an event reaches the gateway with it; the form without it still reads.
    @Test func theTraceparentTravelsWithTheEvent() throws {
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        let sent = ChannelWire.Message(
            offset: 3, epoch: "e1", frameType: "T", createdAt: 9, traceparent: traceparent,
            frameJSON: "{\"a\": \"b c\"}")
        #expect(ChannelWire.encode(sent) == "3 e1 T 9 \(traceparent) {\"a\": \"b c\"}")
        #expect(ChannelWire.decode(Array(ChannelWire.encode(sent).utf8)) == sent)
        let ephemeral = try #require(
            ChannelWire.decode(
                ChannelWire.encodeEphemeral(
                    frameType: "T", createdAt: 9, traceparent: traceparent, frameJSON: [123, 125])))
        #expect(ephemeral.traceparent == traceparent && ephemeral.frameJSON == "{}")
        let untraced = try #require(ChannelWire.decode(Array("3 e1 T 9 - {\"a\": \"b c\"}".utf8)))
        #expect(untraced.traceparent == nil && untraced.frameJSON == "{\"a\": \"b c\"}")
        let before = try #require(ChannelWire.decode(Array("3 e1 T 9 {\"a\": \"b c\"}".utf8)))
        #expect(before.traceparent == nil && before.frameJSON == "{\"a\": \"b c\"}")
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
        for key in [
            Keyspace.ClientChannel.stream(channel), Keyspace.ClientChannel.meta(channel),
            Keyspace.ClientChannel.live(channel),
        ] {
            #expect(key.contains("{conversation:c1}"))
        }
    }
}

@Suite struct KeyspaceTests {
    /// The hash tag Redis Cluster hashes: the text between the first `{` and the next `}`.
    static func tag(_ key: String) -> Substring? {
        guard let open = key.firstIndex(of: "{"), let close = key[open...].firstIndex(of: "}"),
            key.index(after: open) < close
        else { return nil }
        return key[key.index(after: open)..<close]
    }

    @Test func everyKeyHasAHashTag() {
        let channel = Channel.conversation("c1")
        let keys = [
            Keyspace.Conversation.record("c1"), Keyspace.Conversation.outbox("c1"), Keyspace.Conversation.owner("c1"),
            Keyspace.Conversation.members("c1"), Keyspace.Conversation.roles("c1"),
            Keyspace.ClientChannel.live(channel), Keyspace.ClientChannel.stream(channel),
            Keyspace.ClientChannel.meta(channel),
            Keyspace.ClientChannel.seen(channel, eventID: UUID()),
            Keyspace.Device.binding("d1"), Keyspace.Device.generation("d1"), Keyspace.Device.activation("d1"),
            Keyspace.Device.live("d1"), Keyspace.Device.lastTurn("d1"), Keyspace.Device.activationCode("123456"),
            Keyspace.Device.otaRate(address: "10.0.0.1"),
            Keyspace.User.devices("u1"), Keyspace.User.bindRate("u1"), Keyspace.User.commandRate("u1"),
            Keyspace.User.connections("u1"), Keyspace.User.connection("u1", connectionID: "k1"),
            Keyspace.User.bishengSeen("u1", chatID: "chat"), Keyspace.User.workflowRuns("u1"),
            Keyspace.User.activeWorkflowRuns("u1"), Keyspace.User.workflowSession("u1", sessionID: "s1"),
            Keyspace.User.workflowSockets("u1"),
            Keyspace.Task.lease("t1"), Keyspace.Task.chunks("t1"), Keyspace.Task.generated("t1"),
            Keyspace.Task.done("t1"),
            Keyspace.Run.stopped("r1"),
            Keyspace.Workflow.record("w1"), Keyspace.Workflow.nodes("w1"), Keyspace.Workflow.completions("w1"),
            Keyspace.Workflow.executions("w1"), Keyspace.Workflow.socket("k1"),
            Keyspace.Voice.route("v1"), Keyspace.connectionPool("xiaozhi"),
            Keyspace.Cluster.gateways, Keyspace.Cluster.services, Keyspace.Cluster.maintenance,
            Keyspace.Cluster.systemStatusPublisher, Keyspace.Cluster.systemStatusLast, Keyspace.Cluster.team,
            Keyspace.Cluster.workflowSockets,
        ]
        for key in keys {
            #expect(key.hasPrefix("sb:{") && Self.tag(key) != nil, "\(key)")
        }
        #expect(Set(keys).count == keys.count, "two keys share a name")
    }

    /// Keys one script touches together share their tag (one slot).
    @Test func keysOfOneScriptShareATag() {
        let channel = Channel.conversation("c1")
        let groups = [
            [Keyspace.Conversation.record("c1"), Keyspace.Conversation.outbox("c1")],
            [
                Keyspace.ClientChannel.meta(channel), Keyspace.ClientChannel.stream(channel),
                Keyspace.ClientChannel.seen(channel, eventID: UUID()),
            ],
            [
                Keyspace.Task.lease("t1"), Keyspace.Task.chunks("t1"), Keyspace.Task.generated("t1"),
                Keyspace.Task.done("t1"),
            ],
            [Keyspace.User.connections("u1"), Keyspace.User.connection("u1", connectionID: "k1")],
        ]
        for keys in groups {
            #expect(Set(keys.map(Self.tag)).count == 1, "\(keys)")
        }
        // A workflow run's keys sit with its client channel, a conversation's with its own.
        #expect(Self.tag(Keyspace.Workflow.record("w1")) == Self.tag(Keyspace.ClientChannel.stream(.workflow("w1"))))
        #expect(Self.tag(Keyspace.Conversation.roles("c1")) == Self.tag(Keyspace.ClientChannel.live(channel)))
    }
}

/// A reply's id names the message it answers; readers find the run from it.
@Suite struct ReplyIDTests {
    @Test func aReplysIdNamesTheMessageItAnswers() {
        #expect(ReplyID.answering("m-1") == "reply-m-1")
        #expect(ReplyID.answering("m-1", role: "Kulu") == "reply-m-1-kulu")
        #expect(ReplyID.answered(by: ReplyID.answering("m-1")) == "m-1")
        #expect(ReplyID.answered(by: "reply-m-1-kulu") == "m-1-kulu")
        #expect(ReplyID.answered(by: "m-1") == nil)
    }
}
