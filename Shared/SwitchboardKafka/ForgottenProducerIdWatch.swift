import Foundation

/// Tells from librdkafka's statistics when a broker has forgotten the idempotent producer's id, so the
/// producer must start over with a new one (`KafkaProducer.renew`).
///
/// A broker that lost its state (Tansu restarted with its in-memory log) answers every send
/// `UNKNOWN_PRODUCER_ID`. librdkafka then bumps the producer's epoch and sends again, which the broker
/// refuses again, until each message times out: measured against a restarted Tansu, the epoch climbed
/// by about 75 a second under the same producer id, with nothing delivered. A healthy producer bumps its
/// epoch rarely (once after retention deleted its last message) and delivers in between.
struct ForgottenProducerIdWatch {
    /// Epoch bumps between two readings, with nothing delivered, that mean the broker forgot the id.
    static let bumpsMeaningForgotten = 10

    private var last: ProducerStatistics.Idempotence?
    private var deliveredSinceLastReading = false

    mutating func delivered() {
        deliveredSinceLastReading = true
    }

    /// Reads one statistics report; true when the producer should be renewed.
    mutating func read(_ reading: ProducerStatistics.Idempotence) -> Bool {
        defer {
            last = reading
            deliveredSinceLastReading = false
        }
        guard let last, last.producerID == reading.producerID, reading.producerID >= 0 else { return false }
        return reading.producerEpoch - last.producerEpoch >= Self.bumpsMeaningForgotten && !deliveredSinceLastReading
    }

    /// Every broker connection dropped: true when the producer should be renewed now, idle or busy.
    /// A broker that comes back without its state (Tansu restarted empty) numbers producer ids from 1
    /// again, so the id this producer holds is soon another producer's too, at the same epoch 0. The
    /// broker then checks this producer's sends against the other's sequence numbers: a send behind them
    /// is answered DUPLICATE_SEQUENCE_NUMBER, which librdkafka reports as delivered, and the message is
    /// lost with no error and no epoch bump to tell (seen: a workflow-runner idle through the restart had
    /// its 29 run events reported delivered, none on any topic; one conversation in 50 unanswered after
    /// a restart now and then). So a producer holding an id takes a new one from the broker as it comes
    /// back. A busy one too: its in-flight messages fail with `.renewed` and are sent again, which can
    /// deliver one twice when the broker had kept it; consumers drop a redelivered event by its id, and
    /// a duplicate costs nothing where a loss costs an answer. A new handle holds no id until its first
    /// statistics report shows one, so a broker that stays down does not renew the producer again and again.
    func shouldRenewWhenAllBrokersDown() -> Bool {
        (last?.producerID ?? -1) >= 0
    }

    /// A new librdkafka handle starts its own count.
    mutating func renewed() {
        last = nil
        deliveredSinceLastReading = false
    }
}

/// The part of librdkafka's statistics JSON the producer reads (STATISTICS.md, `eos`).
struct ProducerStatistics: Decodable {
    struct Idempotence: Decodable, Equatable {
        /// -1 until the broker assigned one.
        var producerID: Int64
        var producerEpoch: Int

        enum CodingKeys: String, CodingKey {
            case producerID = "producer_id"
            case producerEpoch = "producer_epoch"
        }
    }

    /// Present for an idempotent producer only.
    var eos: Idempotence?

    /// The `eos` object of a statistics report, decoded alone. The whole report lists every broker,
    /// topic and partition (tens of kilobytes here) and is read on the thread that delivers the
    /// producer's reports: decoding all of it every 2 s held them up. `eos` holds no nested object.
    static func idempotence(in report: Data) -> Idempotence? {
        guard let key = report.firstRange(of: Data(#""eos":"#.utf8)),
            let end = report[key.upperBound...].firstIndex(of: UInt8(ascii: "}"))
        else { return nil }
        return try? JSONDecoder().decode(Idempotence.self, from: report[key.upperBound...end])
    }
}
