import SwitchboardContracts
import Testing

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

    /// The voice-worker, when Redis was down as it asked its question: it knows no position, so its first
    /// live event has the channel read from its start.
    @Test func aFollowerWithoutAPositionReadsTheChannelFromItsStart() throws {
        var sequencer = ChannelSequencer()
        _ = sequencer.finishRecovery(since: nil, top: nil, history: [])
        #expect(sequencer.epoch == nil)
        let repair = sequencer.beginRepair(holding: event(3))
        let from = try #require(repair)
        #expect(from.offset == 0 && from.epoch == nil)
        let result = sequencer.finishRepair(from: from, top: (3, "e1"), history: [event(1), event(2), event(3)])
        #expect(result == .recovered([event(1), event(2), event(3)]))
        #expect(sequencer.receiveLive(event(3)) == .dropDuplicate)
        #expect(sequencer.receiveLive(event(4)) == .deliver(event(4)))
    }

    @Test func anEpochChangeWhileLiveIsAGap() {
        var sequencer = ChannelSequencer()
        _ = sequencer.finishRecovery(since: nil, top: (3, "e1"), history: [])
        #expect(sequencer.receiveLive(event(1, epoch: "e2")) == .gap(expected: 4, got: 1))
    }
}
