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

    /// Every broker connection dropped: true when the producer should be renewed now. An idle producer
    /// holding an id from a broker that comes back without its state gets its next sends acknowledged
    /// and lost (seen with Tansu: a workflow-runner idle through the restart had its 29 run events
    /// reported delivered, and none was on any topic), with no error and no epoch bump to tell. So an
    /// idle producer that holds an id takes a new one (from the broker as it comes back); a busy one
    /// is left to the epoch count, since renewing it could send its in-flight messages twice. A new
    /// handle holds no id until its first statistics report shows one, so a broker that stays down
    /// does not renew the producer again and again.
    func shouldRenewWhenAllBrokersDown(idle: Bool) -> Bool {
        idle && (last?.producerID ?? -1) >= 0
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
