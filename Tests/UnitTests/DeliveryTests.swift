import CompressNIO
import NIOCore
import SwitchboardContracts
import Testing

@testable import Gateway

@Suite struct ChannelSequencerTests {
    func event(_ offset: Int64, epoch: String = "e1") -> ChannelWire.Message {
        .init(offset: offset, epoch: epoch, frameType: "T", frameJSON: "{\"n\":\(offset)}")
    }

    @Test func resumesWithTheMissedEventsThenTheHeldLiveOnesWithoutDuplicates() {
        var sequencer = ChannelSequencer()
        // Live events arrive while the history is read; 6 and 7 are in both.
        #expect(sequencer.receiveLive(event(6)) == .hold)
        #expect(sequencer.receiveLive(event(7)) == .hold)
        #expect(sequencer.receiveLive(event(8)) == .hold)
        let result = sequencer.finishRecovery(
            since: StreamPosition(epoch: "e1", offset: 4), top: (7, "e1"), history: [event(5), event(6), event(7)])
        #expect(result == .recovered([event(5), event(6), event(7), event(8)]))
        #expect(sequencer.receiveLive(event(8)) == .dropDuplicate)
        #expect(sequencer.receiveLive(event(9)) == .deliver(event(9)))
        #expect(sequencer.receiveLive(event(11)) == .gap(expected: 10, got: 11))
    }

    @Test func aGapIsRepairedFromTheStreamWithTheLiveEventsHeldMeanwhile() {
        var sequencer = ChannelSequencer()
        _ = sequencer.finishRecovery(since: StreamPosition(epoch: "e1", offset: 4), top: (4, "e1"), history: [])
        #expect(sequencer.receiveLive(event(5)) == .deliver(event(5)))
        // 6 and 7 were published while PUB/SUB was down; 8 shows the gap, 9 arrives while 6… is read.
        #expect(sequencer.receiveLive(event(8)) == .gap(expected: 6, got: 8))
        let from = sequencer.beginRepair(holding: event(8))
        #expect(from?.offset == 5 && from?.epoch == "e1")
        #expect(sequencer.beginRepair() == nil, "one repair at a time")
        #expect(sequencer.receiveLive(event(9)) == .hold)
        let result = sequencer.finishRecovery(
            since: StreamPosition(epoch: "e1", offset: 5), top: (9, "e1"),
            history: [event(6), event(7), event(8), event(9)])
        #expect(result == .recovered([event(6), event(7), event(8), event(9)]))
        #expect(sequencer.receiveLive(event(10)) == .deliver(event(10)))
    }

    @Test func aRepairTheStreamCannotServeTellsTheClient() {
        var sequencer = ChannelSequencer()
        _ = sequencer.finishRecovery(since: StreamPosition(epoch: "e1", offset: 4), top: (4, "e1"), history: [])
        let from = sequencer.beginRepair()
        #expect(from?.offset == 4)
        // The stream was trimmed past 5.
        let result = sequencer.finishRecovery(
            since: StreamPosition(epoch: "e1", offset: 4), top: (20, "e1"), history: (8...20).map { event($0) })
        #expect(result == .notRecovered(live: []))
    }

    @Test func aClientThatIsUpToDateGetsOnlyNewEvents() {
        var sequencer = ChannelSequencer()
        let result = sequencer.finishRecovery(
            since: StreamPosition(epoch: "e1", offset: 7), top: (7, "e1"), history: [])
        #expect(result == .recovered([]))
        #expect(sequencer.receiveLive(event(8)) == .deliver(event(8)))
    }

    @Test func anotherEpochIsNotRecovered() {
        var sequencer = ChannelSequencer()
        _ = sequencer.receiveLive(event(8, epoch: "e2"))
        let result = sequencer.finishRecovery(
            since: StreamPosition(epoch: "old", offset: 3), top: (7, "e2"), history: [event(4, epoch: "e2")])
        // Nothing replayed; the live stream continues after the top.
        #expect(result == .notRecovered(live: [event(8, epoch: "e2")]))
        #expect(sequencer.receiveLive(event(9, epoch: "e2")) == .deliver(event(9, epoch: "e2")))
    }

    @Test func aPositionOutsideTheWindowIsNotRecoveredPartially() {
        var sequencer = ChannelSequencer()
        // The stream kept only 6…10; the client has 2.
        let result = sequencer.finishRecovery(
            since: StreamPosition(epoch: "e1", offset: 2), top: (10, "e1"), history: (6...10).map { event($0) })
        #expect(result == .notRecovered(live: []))
        #expect(sequencer.receiveLive(event(11)) == .deliver(event(11)))
    }

    @Test func aPositionAheadOfTheChannelIsNotRecovered() {
        var sequencer = ChannelSequencer()
        let result = sequencer.finishRecovery(
            since: StreamPosition(epoch: "e1", offset: 50), top: (10, "e1"), history: [])
        #expect(result == .notRecovered(live: []))
    }

    @Test func aPlainSubscriptionStartsAtTheTop() {
        var sequencer = ChannelSequencer()
        _ = sequencer.receiveLive(event(10))
        _ = sequencer.receiveLive(event(11))
        #expect(sequencer.finishRecovery(since: nil, top: (10, "e1"), history: []) == .recovered([event(11)]))
        #expect(sequencer.lastOffset == 11)
    }

    @Test func aNewChannelDeliversWhatArrivedWhileSubscribing() {
        var sequencer = ChannelSequencer()
        _ = sequencer.receiveLive(event(2))
        _ = sequencer.receiveLive(event(1))
        #expect(sequencer.finishRecovery(since: nil, top: nil, history: []) == .recovered([event(1), event(2)]))
        #expect(sequencer.receiveLive(event(3)) == .deliver(event(3)))
    }

    @Test func anEpochChangeWhileLiveIsAGap() {
        var sequencer = ChannelSequencer()
        _ = sequencer.finishRecovery(since: nil, top: (3, "e1"), history: [])
        #expect(sequencer.receiveLive(event(1, epoch: "e2")) == .gap(expected: 4, got: 1))
    }
}

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
