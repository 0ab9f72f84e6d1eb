import Foundation
import Logging
import Metrics
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardStore

/// The persistence consumer (command side → query side): its own consumer group (`sb-history`) reads
/// the user messages and the client events and writes them to PostgreSQL. The processor stores a
/// message's offset only after `record` returned, i.e. after the transaction committed; a redelivered
/// event writes nothing new (every row is keyed by the event's id).
public struct HistoryRecorder: Sendable {
    let store: HistoryStore

    public init(store: HistoryStore) {
        self.store = store
    }

    public func record(_ message: KafkaConsumerMessage) async throws {
        let header = try EnvelopeCodec.header(from: message.value)
        let writes: [HistoryWrite]
        switch header.type {
        case ChatMessageSubmitted.eventType:
            writes = HistoryMapper.writes(for: try EnvelopeCodec.decode(ChatMessageSubmitted.self, from: message.value))
        case ChatInterruptRequested.eventType:
            writes = HistoryMapper.writes(forInterrupt: try EnvelopeCodec.decode(ChatInterruptRequested.self, from: message.value))
        case ClientEvent.eventType:
            writes = HistoryMapper.writes(for: try EnvelopeCodec.decode(ClientEvent.self, from: message.value))
        default:
            // Other events of these topics are none of the history's business.
            return
        }
        guard !writes.isEmpty else { return }
        try await store.apply(writes)
        HistoryMetrics.recorded.increment(by: writes.count)
    }
}

enum HistoryMetrics {
    static let recorded = Counter(label: "sb_history_rows_written_total")
}
