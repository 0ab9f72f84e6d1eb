import Metrics
import Synchronization

/// The bus's metric handles, each label written once (docs/configuration.md lists them). A handle costs a
/// registry lookup, so each is made once: the ones with a topic dimension at the topic's first use.
enum KafkaMetrics {
    static let produced = Counter(label: "sb_kafka_produced_total")
    static let produceFailures = Counter(label: "sb_kafka_produce_failures_total")
    static let producerRenewals = Counter(label: "sb_kafka_producer_renewals_total")
    static let partitionsWaiting = Gauge(label: "sb_kafka_partitions_waiting")
    static let batchSize = Recorder(label: "sb_kafka_batch_size")

    static let handled = PerTopic(label: "sb_kafka_handled_total")
    /// A batch that failed and was handled again message by message.
    static let batchFallbacks = PerTopic(label: "sb_kafka_batch_fallbacks_total")
    /// Waits of a partition whose handler found a dependency down.
    static let dependencyRetries = PerTopic(label: "sb_kafka_dependency_retries_total")
    static let handlerRetries = PerTopic(label: "sb_kafka_handler_retries_total")
    static let deadLetters = PerTopic(label: "sb_kafka_dead_letters_total")

    static func lagSeconds(group: String) -> Gauge {
        Gauge(label: "sb_kafka_consumer_lag_seconds", dimensions: [("group", group)])
    }

    /// Partitions a member has paused (its buffer full, or a dependency down).
    static func pausedPartitions(group: String) -> Meter {
        Meter(label: "sb_kafka_paused_partitions", dimensions: [("group", group)])
    }

    static func partitionsRevoked(group: String) -> Counter {
        Counter(label: "sb_kafka_partitions_revoked_total", dimensions: [("group", group)])
    }

    /// One counter of `label` per topic.
    final class PerTopic: Sendable {
        let label: String
        private let counters = Mutex<[String: Counter]>([:])

        init(label: String) {
            self.label = label
        }

        func callAsFunction(_ topic: String) -> Counter {
            counters.withLock { counters in
                if let counter = counters[topic] { return counter }
                let counter = Counter(label: label, dimensions: [("topic", topic)])
                counters[topic] = counter
                return counter
            }
        }
    }
}
