import Foundation
import Metrics
import Synchronization

/// The messages a processor is handling right now, by when they were produced (their broker
/// timestamps): the oldest one's age is how late the group is, in seconds.
struct MessagesInHand {
    private var producedAt: [UInt64: Int64] = [:]
    private var nextID: UInt64 = 0

    /// `timestampMilliseconds` is the message's broker timestamp; nil counts as produced now.
    mutating func begin(timestampMilliseconds: Int64?, nowMilliseconds: Int64) -> UInt64 {
        nextID &+= 1
        producedAt[nextID] = min(timestampMilliseconds ?? nowMilliseconds, nowMilliseconds)
        return nextID
    }

    mutating func end(_ id: UInt64) {
        producedAt.removeValue(forKey: id)
    }

    /// The oldest message's age, 0 when none is in hand.
    func lagSeconds(nowMilliseconds: Int64) -> Double {
        guard let oldest = producedAt.values.min() else { return 0 }
        return Double(max(0, nowMilliseconds - oldest)) / 1000
    }
}

/// `sb_kafka_consumer_lag_seconds{group}`: how long ago the oldest message this process is handling for
/// the group was produced, sampled every second. A message waiting for a dependency keeps ageing; work
/// a handler completes later (a workflow run) is not lag, so only the handler's call counts.
final class ConsumerTimeLag: Sendable {
    private let inHand = Mutex(MessagesInHand())
    private let gauge: Gauge

    init(group: String) {
        gauge = KafkaMetrics.lagSeconds(group: group)
    }

    func begin(_ message: KafkaConsumerMessage) -> UInt64 {
        let now = Self.nowMilliseconds()
        return inHand.withLock { $0.begin(timestampMilliseconds: message.timestampMilliseconds, nowMilliseconds: now) }
    }

    func end(_ id: UInt64) {
        inHand.withLock { $0.end(id) }
    }

    /// Records the lag every second until cancelled.
    func sample() async {
        while !Task.isCancelled {
            let now = Self.nowMilliseconds()
            gauge.record(inHand.withLock { $0.lagSeconds(nowMilliseconds: now) })
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private static func nowMilliseconds() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1000)
    }
}
