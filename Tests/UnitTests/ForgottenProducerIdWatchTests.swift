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

    /// A producer holding an id renews when every broker connection drops; one without an id yet (a new
    /// handle while the broker stays down) does not.
    @Test func aProducerWithAnIdRenewsWhenEveryBrokerDrops() {
        var watch = ForgottenProducerIdWatch()
        #expect(!watch.shouldRenewWhenAllBrokersDown(), "no statistics yet: no id known")
        _ = watch.read(Reading(producerID: -1, producerEpoch: -1))
        #expect(!watch.shouldRenewWhenAllBrokersDown(), "no id assigned yet")
        _ = watch.read(Reading(producerID: 7, producerEpoch: 0))
        #expect(watch.shouldRenewWhenAllBrokersDown())
        watch.renewed()
        #expect(!watch.shouldRenewWhenAllBrokersDown(), "the new handle has no id until it reports one")
    }

    /// As measured against a Tansu restarted empty: the id stays, the epoch climbs.
    @Test func theIdAndEpochAreReadFromLibrdkafkasStatistics() throws {
        let json = Data(
            #"{"name":"p#producer-1","type":"producer","brokers":{},"topics":{},"eos":{"idemp_state":"Assigned","idemp_stateage":20,"txn_state":"Init","txn_stateage":55756549,"txn_may_enq":false,"producer_id":1,"producer_epoch":67,"epoch_cnt":1}}"#
                .utf8)
        #expect(
            ProducerStatistics.idempotence(in: json) == Reading(producerID: 1, producerEpoch: 67))
        // librdkafka's own spacing (rdkafka.c).
        let spaced = Data(
            #"{ "name": "p", "topics": { "t": { "partitions": { "0": { "msgq_cnt": 0 } } } }, "eos": { "idemp_state": "Assigned", "producer_id": 4, "producer_epoch": 9, "epoch_cnt": 1 }}"#
                .utf8)
        #expect(ProducerStatistics.idempotence(in: spaced) == Reading(producerID: 4, producerEpoch: 9))
        let consumer = Data(#"{"name":"c#consumer-1","type":"consumer"}"#.utf8)
        #expect(ProducerStatistics.idempotence(in: consumer) == nil)
    }
}
