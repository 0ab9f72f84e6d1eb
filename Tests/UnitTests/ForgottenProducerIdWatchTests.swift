import Foundation
@testable import SwitchboardKafka
import Testing

/// When the producer decides that the broker forgot its idempotent producer id.
struct ForgottenProducerIdWatchTests {
    typealias Reading = ProducerStatistics.Idempotence
    static let many = ForgottenProducerIdWatch.bumpsMeaningForgotten

    @Test func epochsBumpedAgainAndAgainWithNothingDeliveredMeanTheIdIsForgotten() {
        var watch = ForgottenProducerIdWatch()
        let baseline = watch.read(Reading(producerID: 1, producerEpoch: 0))
        #expect(!baseline, "the first reading is only a baseline")
        let once = watch.read(Reading(producerID: 1, producerEpoch: 1))
        #expect(!once, "one bump is what retention deleting the last message causes")
        let again = watch.read(Reading(producerID: 1, producerEpoch: 1 + Self.many))
        #expect(again)
    }

    @Test func deliveriesBetweenReadingsMeanTheBrokerStillTakesTheProducer() {
        var watch = ForgottenProducerIdWatch()
        _ = watch.read(Reading(producerID: 1, producerEpoch: 0))
        watch.delivered()
        let delivered = watch.read(Reading(producerID: 1, producerEpoch: 50))
        #expect(!delivered)
        // The next window counts on its own.
        let next = watch.read(Reading(producerID: 1, producerEpoch: 50 + Self.many))
        #expect(next)
    }

    @Test func aNewProducerIdOrNoneYetIsNoSignal() {
        var watch = ForgottenProducerIdWatch()
        _ = watch.read(Reading(producerID: -1, producerEpoch: -1))
        let assigned = watch.read(Reading(producerID: 4, producerEpoch: 30))
        #expect(!assigned)
        let newID = watch.read(Reading(producerID: 5, producerEpoch: 60))
        #expect(!newID)
        watch.renewed()
        let afterRenewal = watch.read(Reading(producerID: 5, producerEpoch: 90))
        #expect(!afterRenewal, "a renewed producer starts a new baseline")
    }

    /// As measured against a Tansu restarted empty: the id stays, the epoch climbs.
    @Test func theIdAndEpochAreReadFromLibrdkafkasStatistics() throws {
        let json = Data(
            #"{"name":"p#producer-1","type":"producer","brokers":{},"topics":{},"eos":{"idemp_state":"Assigned","idemp_stateage":20,"txn_state":"Init","txn_stateage":55756549,"txn_may_enq":false,"producer_id":1,"producer_epoch":67,"epoch_cnt":1}}"#
                .utf8)
        #expect(
            try JSONDecoder().decode(ProducerStatistics.self, from: json).eos
                == Reading(producerID: 1, producerEpoch: 67))
        let consumer = Data(#"{"name":"c#consumer-1","type":"consumer"}"#.utf8)
        #expect(try JSONDecoder().decode(ProducerStatistics.self, from: consumer).eos == nil)
    }
}

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
