import CompressNIO
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardVoice
import Testing

@testable import Gateway

@Suite struct DeflateNegotiationTests {
    @Test func acceptsWhatBrowsersAndNodeOfferWithoutContextTakeoverEitherWay() throws {
        let (parameters, response) = try #require(
            DeflateParameters.negotiate(offers: ["permessage-deflate; client_max_window_bits"]))
        #expect(parameters.serverWindowBits == 15)
        #expect(response == "permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    }

    @Test func honoursASmallerServerWindowAndDeclinesWhatZlibCannotDo() throws {
        let small = try #require(DeflateParameters.negotiate(offers: ["permessage-deflate; server_max_window_bits=10"]))
        #expect(small.parameters.serverWindowBits == 10)
        #expect(small.response.hasSuffix("; server_max_window_bits=10"))
        #expect(DeflateParameters.negotiate(offers: ["permessage-deflate; server_max_window_bits=8"]) == nil)
        #expect(DeflateParameters.negotiate(offers: ["permessage-deflate; x-unknown=1"]) == nil)
        #expect(DeflateParameters.negotiate(offers: ["x-webkit-deflate-frame"]) == nil)
        #expect(DeflateParameters.negotiate(offers: []) == nil)
        // The first acceptable offer wins.
        let second = try #require(
            DeflateParameters.negotiate(offers: ["permessage-deflate; server_max_window_bits=8, permessage-deflate"]))
        #expect(second.parameters.serverWindowBits == 15)
    }

    @Test func aMessageCompressedAloneInflatesAloneAndTheLimitHolds() throws {
        let deflater = try #require(LoopDeflater.current)
        let text = String(repeating: "{\"type\":\"MESSAGE_STREAM_CHUNK\",\"chunk\":\"hello\"}", count: 40)
        let compressed = try deflater.compress(ByteBuffer(string: text), windowBits: 15, allocator: .init())
        #expect(compressed.readableBytes < text.utf8.count / 4)
        // Twice: no context is carried from one message to the next.
        for _ in 0..<2 {
            let inflated = try deflater.inflate(compressed, limit: 64 * 1024, allocator: .init())
            #expect(String(buffer: inflated) == text)
        }
        #expect(throws: (any Error).self) { try deflater.inflate(compressed, limit: 100, allocator: .init()) }
    }
}

@Suite struct WebSocketDoorsTests {
    struct Door: WebSocketDoor {
        let pathPattern: String
        func admit(_ request: UpgradeRequest) async throws -> any WebSocketDoorSession { fatalError("unused") }
    }

    @Test func matchesByPathWithCapturedSegmentsAndNoTrailingSlashSensitivity() throws {
        let doors = WebSocketDoors([
            Door(pathPattern: "/ws"), Door(pathPattern: "/ws/{session_id}"), Door(pathPattern: "/xiaozhi/v1/"),
        ])
        #expect(doors.match("/ws")?.door.pathPattern == "/ws")
        let workflow = try #require(doors.match("/ws/abc-1"))
        #expect(workflow.door.pathPattern == "/ws/{session_id}")
        #expect(workflow.parameters == ["session_id": "abc-1"])
        #expect(doors.match("/xiaozhi/v1")?.door.pathPattern == "/xiaozhi/v1/")
        #expect(doors.match("/ws/a/b") == nil)
        #expect(doors.match("/other") == nil)
    }

    @Test func theUpgradeRequestReadsTheTokenFromTheHeaderFirstThenTheQuery() {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/ws?token=q&x=1")
        #expect(UpgradeRequest(head: head).bearerToken == "q")
        head.headers.add(name: "Authorization", value: "Bearer h")
        #expect(UpgradeRequest(head: head).bearerToken == "h")
        #expect(UpgradeRequest(head: head).query["x"] == "1")
    }
}

/// A fake PUB/SUB: one handler per channel, and a count of the subscriptions made.
final class FakeLiveSource: LiveSource {
    private let handlers = Mutex<[String: @Sendable ([UInt8]) -> Void]>([:])
    let subscriptions = Atomic<Int>(0)

    func follow(_ channel: String, handler: @escaping @Sendable ([UInt8]) -> Void) async throws -> LiveFollow {
        subscriptions.add(1, ordering: .relaxed)
        handlers.withLock { $0[channel] = handler }
        return LiveFollow { [weak self] in self?.handlers.withLock { _ = $0.removeValue(forKey: channel) } }
    }

    func onResubscribed(_ handler: @escaping @Sendable () -> Void) {}

    func publish(_ channel: String, _ message: ChannelWire.Message) {
        handlers.withLock { $0[channel] }?(Array(ChannelWire.encode(message).utf8))
    }
}

/// Records what it is given and on which thread.
final class RecordingSink: FrameSink {
    let loop: any EventLoop
    let received = Mutex<[(event: HubEvent, onLoop: Bool)]>([])

    init(loop: any EventLoop) { self.loop = loop }

    func deliver(_ message: ChannelWire.Message) -> Bool { true }
    func deliver(shared: SharedFrame) -> Bool {
        received.withLock { $0.append((shared.event, loop.inEventLoop)) }
        return true
    }
    func insufficientState(_ reason: String) {}
}

@Suite(.serialized) struct DeliveryHubTests {
    /// Never read here: these feeds see no gap. (The client connects only when used.)
    static let unusedHistory = ChannelHistory(
        redis: RedisClient(
            configuration: .init(endpoint: RedisEndpoint(url: "redis://127.0.0.1:1")!), logger: Logger(label: "test")))

    @Test func oneSubscriptionAndOneDecodePerMessageHowEverManyFollowersOnEveryLoop() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let source = FakeLiveSource()
        let hub = DeliveryHub(source: source)
        let loops = [group.next(), group.next()]
        #expect(loops[0] !== loops[1])
        var feeds: [ChannelFeed] = []
        var sinks: [RecordingSink] = []
        for index in 0..<50 {
            let sink = RecordingSink(loop: loops[index % 2])
            let feed = ChannelFeed(
                channel: .conversation("c1"), loop: sink.loop, sink: sink, hub: hub, history: Self.unusedHistory)
            try await hub.add(feed)
            feeds.append(feed)
            sinks.append(sink)
        }
        #expect(source.subscriptions.load(ordering: .relaxed) == 1)
        let live = Keyspace.ClientChannel.live(.conversation("c1"))
        for n in 1...3 {
            source.publish(live, .init(offset: 0, epoch: "-", frameType: "TYPING_START", frameJSON: "{\"n\":\(n)}"))
        }
        // Every sink got all three, on its own loop, and every sink got the same decoded events.
        try await waitUntil { sinks.allSatisfy { $0.received.withLock { $0.count } == 3 } }
        let first = sinks[0].received.withLock { $0.map(\.event) }
        for sink in sinks {
            let got = sink.received.withLock { $0 }
            #expect(got.allSatisfy { $0.onLoop })
            #expect(zip(got.map(\.event), first).allSatisfy { $0 === $1 })
        }
        #expect(String(buffer: first[0].stamped) == "{\"n\":1}")
        // The subscription ends with its last follower.
        for feed in feeds { await hub.remove(feed) }
        #expect(hub.channelCount == 0)
        source.publish(live, .init(offset: 0, epoch: "-", frameType: "TYPING_START", frameJSON: "{}"))
        try await Task.sleep(for: .milliseconds(50))
        #expect(sinks[0].received.withLock { $0.count } == 3)
        try await group.shutdownGracefully()
    }

    func waitUntil(_ condition: () -> Bool) async throws {
        for _ in 0..<200 where !condition() { try await Task.sleep(for: .milliseconds(10)) }
        #expect(condition())
    }
}

/// Counts the flushes that reach the socket.
final class FlushCounter: ChannelOutboundHandler {
    typealias OutboundIn = Any
    var flushes = 0
    func flush(context: ChannelHandlerContext) {
        flushes += 1
        context.flush()
    }
}

@Suite struct WebSocketConnectionHandlerTests {
    func makeChannel(limit: Int = 1 << 20, deflate: DeflateParameters? = nil) throws
        -> (EmbeddedChannel, WebSocketConnectionHandler, FlushCounter)
    {
        let channel = EmbeddedChannel()
        let counter = FlushCounter()
        let handler = WebSocketConnectionHandler(
            settings: .init(maxMessageBytes: 1024, outboundLimitBytes: limit, pingInterval: .seconds(30)),
            deflate: deflate)
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(handler)
        return (channel, handler, counter)
    }

    @Test func framesQueuedInOneTickLeaveInOneFlush() throws {
        let (channel, handler, counter) = try makeChannel()
        for n in 0..<5 {
            #expect(
                handler.enqueue(OutboundPayload(bytes: ByteBuffer(string: "f\(n)")), ephemeral: false, createdAt: 0))
        }
        #expect(try channel.readOutbound(as: WebSocketFrame.self) == nil)
        channel.embeddedEventLoop.run()
        var texts: [String] = []
        while let frame = try channel.readOutbound(as: WebSocketFrame.self) { texts.append(String(buffer: frame.data)) }
        #expect(texts == ["f0", "f1", "f2", "f3", "f4"])
        #expect(counter.flushes == 1)
    }

    @Test func aClientThatFallsBehindIsClosedWith4002AndNothingElseIsQueued() throws {
        let (channel, handler, _) = try makeChannel(limit: 10)
        #expect(handler.enqueue(OutboundPayload(bytes: ByteBuffer(string: "12345678")), ephemeral: false, createdAt: 0))
        #expect(
            !handler.enqueue(OutboundPayload(bytes: ByteBuffer(string: "overflow")), ephemeral: false, createdAt: 0))
        let frame = try #require(try channel.readOutbound(as: WebSocketFrame.self))
        #expect(frame.opcode == .connectionClose)
        var data = frame.data
        #expect(data.readInteger(as: UInt16.self) == CloseCode.slowConsumer.rawValue)
        #expect(!handler.enqueue(OutboundPayload(bytes: ByteBuffer(string: "x")), ephemeral: false, createdAt: 0))
    }

    @Test func sharedFramesGoOutCompressedAsGivenAndSmallOnesPlain() throws {
        let (channel, handler, _) = try makeChannel(deflate: DeflateParameters())
        let big = String(repeating: "abcdefgh", count: 64)
        let deflater = try #require(LoopDeflater.current)
        let deflated = try deflater.compress(ByteBuffer(string: big), windowBits: 15, allocator: .init())
        handler.enqueue(
            OutboundPayload(bytes: ByteBuffer(string: big), deflated: deflated), ephemeral: false, createdAt: 0)
        handler.enqueue(OutboundPayload(bytes: ByteBuffer(string: "small")), ephemeral: false, createdAt: 0)
        channel.embeddedEventLoop.run()
        let first = try #require(try channel.readOutbound(as: WebSocketFrame.self))
        #expect(first.rsv1 && first.data == deflated)
        let second = try #require(try channel.readOutbound(as: WebSocketFrame.self))
        #expect(!second.rsv1 && String(buffer: second.data) == "small")
    }

    /// Seed 000: a ping every 30 s, answered within 5 s, closed with 4004 after 3 missed in a row.
    @Test func answersPingsAndClosesAfterThreeMissedPongs() throws {
        let channel = EmbeddedChannel()
        let handler = WebSocketConnectionHandler(
            settings: .init(maxMessageBytes: 1024, outboundLimitBytes: 1024, pingInterval: .seconds(30)), deflate: nil)
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.writeInbound(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer(string: "hi")))
        let pong = try #require(try channel.readOutbound(as: WebSocketFrame.self))
        #expect(pong.opcode == .pong && String(buffer: pong.data) == "hi")
        func drain() throws -> [WebSocketOpcode] {
            var opcodes: [WebSocketOpcode] = []
            while let frame = try channel.readOutbound(as: WebSocketFrame.self) { opcodes.append(frame.opcode) }
            return opcodes
        }
        // Two pings missed, then one answered within its 5 s: the count starts again.
        channel.embeddedEventLoop.advanceTime(by: .seconds(65))
        let ping = WebSocketOpcode.ping
        #expect(try drain() == [ping, ping])
        channel.embeddedEventLoop.advanceTime(by: .seconds(25))
        #expect(try drain() == [ping])
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        try channel.writeInbound(WebSocketFrame(fin: true, opcode: .pong, data: ByteBuffer()))
        // Pings at 120, 150 and 180 s all missed: the close comes 5 s after the third.
        channel.embeddedEventLoop.advanceTime(by: .seconds(184 - 92))
        #expect(try drain() == [ping, ping, ping])
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        let close = try #require(try channel.readOutbound(as: WebSocketFrame.self))
        #expect(close.opcode == .connectionClose)
        var data = close.data
        #expect(data.readInteger(as: UInt16.self) == CloseCode.noPong.rawValue)
    }
}

/// A device's downlink is written on its socket's loop: audio at the pacer's slots (a task scheduled on
/// the loop), `tts stop` once the device has played everything, all cleared at once on barge-in.
@Suite struct DeviceDownlinkTests {
    /// The pacer's clock, moved by the test.
    final class ManualClock: Sendable {
        let start = ContinuousClock.now
        let elapsed = Mutex(Duration.zero)
        var now: ContinuousClock.Instant { start + elapsed.withLock { $0 } }
    }

    struct Harness {
        let channel = NIOAsyncTestingChannel()
        let clock = ManualClock()
        let connection: DeviceConnection
        let outbound: WebSocketOutbound

        init() async throws {
            // The socket's side is made on its loop, as the gateway does.
            outbound = try await channel.testingEventLoop.executeInContext { [channel] in
                let handler = WebSocketConnectionHandler(
                    settings: .init(maxMessageBytes: 1024, outboundLimitBytes: 1 << 20, pingInterval: .seconds(30)),
                    deflate: nil)
                try channel.pipeline.syncOperations.addHandler(handler)
                return WebSocketOutbound(handler: handler, channel: channel)
            }
            let identity = DeviceIdentity(
                deviceID: "d", clientID: "c", protocolVersion: 1, userID: "u", conversationID: "voice-d")
            let clock = clock
            connection = DeviceConnection(
                sessionID: "s", identity: identity, framing: try Xiaozhi.BinaryProtocol(version: 1), burstFrames: 5,
                now: { clock.now })
        }

        /// Moves the pacer's clock and the loop's together.
        func advance(to time: Duration) async {
            let step = clock.elapsed.withLock { elapsed in
                defer { elapsed = time }
                return time - elapsed
            }
            await channel.testingEventLoop.advanceTime(by: TimeAmount(step))
        }

        /// What the device has received so far: "audio" or the text's `state`.
        func received() async throws -> [String] {
            await channel.testingEventLoop.run()
            var frames: [String] = []
            while let frame = try await channel.readOutbound(as: WebSocketFrame.self) {
                if frame.opcode == .binary {
                    frames.append("audio")
                } else {
                    let text = String(buffer: frame.data)
                    frames.append(text.contains("\"stop\"") ? "tts stop" : text)
                }
            }
            return frames
        }
    }

    @Test func audioLeavesInABurstThenOneFramePerSlotAndTtsStopOnceDrained() async throws {
        let harness = try await Harness()
        for _ in 0..<8 { harness.connection.enqueue(.audio([1, 2, 3], turn: 1)) }
        harness.connection.enqueue(.ttsStop(turn: 1))
        let writer = Task { await harness.connection.writeFrames(to: harness.outbound, logger: Logger(label: "test")) }
        // The burst of 5 as soon as the writer is attached.
        var sent: [String] = []
        while sent.count < 5 { sent += try await harness.received() }
        #expect(sent == Array(repeating: "audio", count: 5))
        // Then one 60 ms frame per slot: the device never holds more than the burst.
        await harness.advance(to: .milliseconds(59))
        #expect(try await harness.received().isEmpty)
        await harness.advance(to: .milliseconds(60))
        #expect(try await harness.received() == ["audio"])
        await harness.advance(to: .milliseconds(180))
        #expect(try await harness.received() == ["audio", "audio"])
        // 8 frames play until 480 ms: `tts stop` waits for that.
        await harness.advance(to: .milliseconds(479))
        #expect(try await harness.received().isEmpty)
        await harness.advance(to: .milliseconds(480))
        #expect(try await harness.received() == ["tts stop"])
        harness.connection.finish()
        await harness.channel.testingEventLoop.run()
        await writer.value
    }

    @Test func bargeInSendsTtsStopAtOnceAndDropsTheWaitingAudio() async throws {
        let harness = try await Harness()
        for _ in 0..<8 { harness.connection.enqueue(.audio([1, 2, 3], turn: 1)) }
        let writer = Task { await harness.connection.writeFrames(to: harness.outbound, logger: Logger(label: "test")) }
        var sent: [String] = []
        while sent.count < 5 { sent += try await harness.received() }
        await harness.advance(to: .milliseconds(30))
        harness.connection.abort()
        #expect(try await harness.received() == ["tts stop"])
        // The frames of the aborted turn waiting for their slots never go; a new turn bursts again.
        await harness.advance(to: .milliseconds(600))
        #expect(try await harness.received().isEmpty)
        for _ in 0..<3 { harness.connection.enqueue(.audio([4], turn: 2)) }
        #expect(try await harness.received() == ["audio", "audio", "audio"])
        harness.connection.enqueue(.close(code: 1000, reason: "bye"))
        await harness.channel.testingEventLoop.run()
        await writer.value
    }
}
