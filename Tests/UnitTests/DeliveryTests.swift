import CompressNIO
import NIOCore
import SwitchboardContracts
import Testing

@testable import Gateway

@Suite struct OutboundBufferTests {
    @Test func queuesWithinTheLimit() {
        var buffer = OutboundBuffer<String>(limitBytes: 10)
        #expect(buffer.enqueue("12345", ephemeral: false) == .queued(droppedEphemeral: 0))
        #expect(buffer.enqueue("12345", ephemeral: false) == .queued(droppedEphemeral: 0))
        #expect(buffer.bytes == 10)
        #expect(buffer.dequeue()?.text == "12345")
        #expect(buffer.bytes == 5)
    }

    @Test func ephemeralFramesAreDroppedOldestFirstToMakeRoom() {
        var buffer = OutboundBuffer<String>(limitBytes: 10)
        _ = buffer.enqueue("tA", ephemeral: true)
        _ = buffer.enqueue("KEEP", ephemeral: false)
        _ = buffer.enqueue("tB", ephemeral: true)
        _ = buffer.enqueue("tC", ephemeral: true)
        // 10 bytes used; 4 more needed: tA and tB go, tC stays.
        #expect(buffer.enqueue("NEW!", ephemeral: false) == .queued(droppedEphemeral: 2))
        #expect(
            [buffer.dequeue(), buffer.dequeue(), buffer.dequeue(), buffer.dequeue()].map { $0?.text } == [
                "KEEP", "tC", "NEW!", nil,
            ])
    }

    @Test func aFrameThatCannotFitOverflowsUnlessItIsEphemeral() {
        var buffer = OutboundBuffer<String>(limitBytes: 8)
        _ = buffer.enqueue("ABCDEFGH", ephemeral: false)
        #expect(buffer.enqueue("t", ephemeral: true) == .queued(droppedEphemeral: 1))
        #expect(buffer.enqueue("X", ephemeral: false) == .overflow)
        #expect(buffer.dequeue()?.text == "ABCDEFGH")
    }

    @Test func theQueueClosesASlowClientAtOnceAndOthersAfterTheirFrames() async {
        let slow = OutboundQueue(limitBytes: 4)
        #expect(slow.enqueue("1234"))
        #expect(!slow.enqueue("5"))
        #expect(await slow.next() == .close(.slowConsumer, reason: "slow consumer: reconnect and recover by offset"))
        #expect(await slow.next() == nil)

        let closing = OutboundQueue(limitBytes: 100)
        closing.enqueue("a")
        closing.close(.shutdown, reason: "bye")
        #expect(!closing.enqueue("late"))
        #expect(await closing.next() == .frame("a", createdAt: 0))
        #expect(await closing.next() == .close(.shutdown, reason: "bye"))
    }

    @Test func closeCodesSayWhetherToReconnect() {
        #expect(
            CloseCode.allCases.filter(\.shouldReconnect) == [
                .shutdown, .serverError, .slowConsumer, .insufficientState, .noPong, .idleTimeout,
            ])
    }

    @Test func serverSentEventsCarryThePositionAsTheirID() {
        let frame = #"{"data":{"x":1},"type":"ROLE_STATUS_CHANGE"}"#
        let message = ChannelWire.Message(offset: 5, epoch: "ab", frameType: "ROLE_STATUS_CHANGE", frameJSON: frame)
        #expect(
            ChatCentreDialect.serverSentEvent(message) == "id: ab:5\nevent: role_status_change\ndata: {\"x\":1}\n\n")
        let typing = ChannelWire.Message(offset: 0, epoch: "-", frameType: "TYPING_START", frameJSON: "{}")
        #expect(ChatCentreDialect.serverSentEvent(typing) == "event: typing_start\ndata: {}\n\n")
    }
}

@Suite struct SSEWireEncoderTests {
    @Test(arguments: [
        ("gzip", true), ("br, gzip;q=0.5", true), ("GZIP", true), ("deflate, gzip ; q=0", false), ("identity", false),
        ("", false),
    ])
    func acceptEncodingIsRead(_ header: String, _ accepted: Bool) {
        #expect(SSEWireEncoder.acceptsGzip(header) == accepted)
    }

    @Test func eachEventCanBeInflatedAsSoonAsItIsWritten() throws {
        let encoder = try SSEWireEncoder(gzip: true)
        let decompressor = CompressionAlgorithm.gzip().decompressor
        try decompressor.startStream()
        for event in ["retry: 3000\n\n", "id: e:1\nevent: T\ndata: {\"a\":1}\n\n", ": ping\n\n"] {
            var written = try encoder.encode(event)
            // Nothing is held back: what was written so far inflates to exactly the event.
            #expect(String(buffer: try written.decompressStream(with: decompressor)) == event)
        }
        var trailer = try #require(try encoder.finish())
        #expect(try trailer.decompressStream(with: decompressor).readableBytes == 0)
        #expect(try SSEWireEncoder(gzip: false).encode("plain") == ByteBuffer(string: "plain"))
    }
}

@Suite struct HandshakeDeadlineTests {
    @Test(arguments: [
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", true), ("GET / HTTP/1.1\r\nHost: x\r\n", false), ("\r\n\r", false),
        ("\r\n\r\n", true), ("", false),
    ])
    func theEndOfARequestHeadIsFound(_ text: String, _ ends: Bool) {
        #expect(HandshakeDeadlineHandler.endsHead(Array(text.utf8)) == ends)
    }
}
