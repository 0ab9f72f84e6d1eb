@testable import SwitchboardKafka
import Testing

/// When a consumer the group forgot subscribes again.
struct LostAssignmentTests {
    @Test func aForgottenMemberSubscribesAgainOnceTheGroupHadTimeToSettleAndAFewTimesAtMost() {
        let lostAt = ContinuousClock.now
        var lost = KafkaConsumer.LostAssignment(since: lostAt)
        let tooSoon = lost.rejoinNow(at: lostAt + .seconds(3))
        #expect(!tooSoon, "the group is still forming")
        let settled = lost.rejoinNow(at: lostAt + KafkaConsumer.LostAssignment.settleTime)
        #expect(settled)
        let rightAfter = lost.rejoinNow(at: lostAt + KafkaConsumer.LostAssignment.settleTime + .seconds(5))
        #expect(!rightAfter, "the new subscription gets its own time to settle")
        var attempts = 1
        var now = lostAt + KafkaConsumer.LostAssignment.settleTime
        for _ in 0..<20 {
            now += KafkaConsumer.LostAssignment.settleTime
            if lost.rejoinNow(at: now) { attempts += 1 }
        }
        #expect(attempts == KafkaConsumer.LostAssignment.maximumRejoins)
    }
}
