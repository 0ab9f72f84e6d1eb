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
