@testable import SwitchboardKafka
import Testing

/// How late a consumer group is, in seconds, from the messages it is handling.
struct ConsumerTimeLagTests {
    @Test func theOldestMessageInHandSetsTheLagAndNoneInHandIsNoLag() {
        var inHand = MessagesInHand()
        #expect(inHand.lagSeconds(nowMilliseconds: 10_000) == 0)
        let older = inHand.begin(timestampMilliseconds: 4_000, nowMilliseconds: 10_000)
        let newer = inHand.begin(timestampMilliseconds: 9_000, nowMilliseconds: 10_000)
        #expect(inHand.lagSeconds(nowMilliseconds: 10_000) == 6)
        // Waiting (for a dependency, say) keeps ageing.
        #expect(inHand.lagSeconds(nowMilliseconds: 15_000) == 11)
        inHand.end(older)
        #expect(inHand.lagSeconds(nowMilliseconds: 15_000) == 6)
        inHand.end(newer)
        #expect(inHand.lagSeconds(nowMilliseconds: 15_000) == 0)
    }

    @Test func aMessageWithoutATimestampOrFromAClockAheadCountsAsProducedNow() {
        var inHand = MessagesInHand()
        _ = inHand.begin(timestampMilliseconds: nil, nowMilliseconds: 10_000)
        _ = inHand.begin(timestampMilliseconds: 12_000, nowMilliseconds: 10_000)
        #expect(inHand.lagSeconds(nowMilliseconds: 10_500) == 0.5)
    }
}
