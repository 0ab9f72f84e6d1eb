import Foundation
import Logging
import Metrics
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardStore

/// The persistence consumer (command side → query side): its own consumer group (`sb-history`) reads
/// the user messages and the client events and writes them to PostgreSQL, a partition's buffered
/// events in one transaction. The processor stores the offsets only after `record` returned, i.e.
/// after the transaction committed; a redelivered event writes nothing new (every row is keyed by the
/// event's id).
public struct HistoryRecorder: Sendable {
    /// Events per transaction at most: enough to amortise the commit, small enough that a batch that
    /// fails and is redone one by one costs little.
    public static let maximumBatch = 500
    let store: HistoryStore

    public init(store: HistoryStore) {
        self.store = store
    }

    public func record(_ message: KafkaConsumerMessage) async throws {
        try await write(try Self.writes(for: message))
    }

    /// What a partition had buffered, in one transaction (one commit instead of one per event). A
    /// message that cannot be decoded fails the batch; the processor then records its messages one
    /// by one, and dead-letters that one alone.
    public func record(batch messages: [KafkaConsumerMessage]) async throws {
        var writes: [HistoryWrite] = []
        for message in messages { writes += try Self.writes(for: message) }
        try await write(writes)
    }

    private func write(_ writes: [HistoryWrite]) async throws {
        guard !writes.isEmpty else { return }
        try await store.apply(writes)
        NotifierMetrics.historyRowsWritten.increment(by: writes.count)
    }

    static func writes(for message: KafkaConsumerMessage) throws -> [HistoryWrite] {
        let header = try EnvelopeCodec.header(from: message.value)
        switch header.type {
        case ChatMessageSubmitted.eventType:
            return HistoryMapper.writes(for: try EnvelopeCodec.decode(ChatMessageSubmitted.self, from: message.value))
        case ChatInterruptRequested.eventType:
            return HistoryMapper.writes(
                forInterrupt: try EnvelopeCodec.decode(ChatInterruptRequested.self, from: message.value))
        case ClientEvent.eventType:
            return try HistoryMapper.writes(for: EnvelopeCodec.decode(ClientEvent.self, from: message.value))
        default:
            // Other events of these topics are none of the history's business.
            return []
        }
    }
}
