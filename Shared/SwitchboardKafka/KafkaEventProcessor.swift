import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// How a handler's failure is treated.
public protocol RetryClassifiedError: Error {
    /// False for errors that no retry can fix (a malformed message): such a message goes straight to
    /// the dead-letter topic.
    var isRetryable: Bool { get }
}

public struct RetryPolicy: Sendable {
    /// Attempts in all, the first included, before a message is dead-lettered.
    public var maxAttempts: Int = 5
    public var backoff = Backoff(initial: .milliseconds(50), maximum: .seconds(5))

    public init(maxAttempts: Int = 5, backoff: Backoff = Backoff(initial: .milliseconds(50), maximum: .seconds(5))) {
        self.maxAttempts = maxAttempts
        self.backoff = backoff
    }
}

/// Runs a handler over every message of a consumer group: one task per partition keeps order per key,
/// partitions run concurrently, a failing message is retried with backoff and then parked in
/// `<topic>.dlq` so its partition moves on. The offset of a message is stored only after it was handled
/// or dead-lettered.
public struct KafkaEventProcessor: Service {
    public typealias Handler = @Sendable (KafkaConsumerMessage) async throws -> Void

    private let consumer: KafkaConsumer
    private let producer: KafkaProducer
    private let retryPolicy: RetryPolicy
    private let handler: Handler
    private let logger: Logger
    private let handledCounters = HandledCounters()

    public init(
        consumer: KafkaConsumer, deadLetterProducer: KafkaProducer, retryPolicy: RetryPolicy = RetryPolicy(),
        logger: Logger, handler: @escaping Handler
    ) {
        self.consumer = consumer
        self.producer = deadLetterProducer
        self.retryPolicy = retryPolicy
        self.logger = logger
        self.handler = handler
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await partition in consumer.partitions {
                    group.addTask {
                        for await message in partition {
                            await process(message)
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            consumer.stopDelivering()
        }
        await consumer.close()
    }

    private func process(_ message: KafkaConsumerMessage) async {
        let dimensions = [("topic", message.topic)]
        var attempt = 0
        while true {
            do {
                try await handler(message)
                handledCounters.counter(for: message.topic).increment()
                break
            } catch {
                attempt += 1
                let retryable = (error as? any RetryClassifiedError)?.isRetryable ?? true
                if retryable && attempt < retryPolicy.maxAttempts {
                    Counter(label: "sb_kafka_handler_retries_total", dimensions: dimensions).increment()
                    logger.debug(
                        "handler failed, retrying",
                        metadata: ["kafka.offset": "\(message.offset)", "error": "\(error)", "attempt": "\(attempt)"])
                    try? await Task.sleep(for: retryPolicy.backoff.delay(attempt: attempt - 1))
                    continue
                }
                // Not parked (the producer is gone): leave the offset alone so the message is read again.
                guard await deadLetter(message, error: error, attempts: attempt) else { return }
                break
            }
        }
        do {
            try consumer.markProcessed(message)
        } catch {
            // The partition moved to another member, which reads the message again.
            logger.debug("offset not stored", metadata: ["kafka.partition": "\(message.topicPartition)", "error": "\(error)"])
        }
    }

    private func deadLetter(_ message: KafkaConsumerMessage, error: any Error, attempts: Int) async -> Bool {
        var headers = message.headers
        headers.append(KafkaHeader(name: "sb-dlq-error", string: "\(error)"))
        headers.append(KafkaHeader(name: "sb-dlq-origin", string: "\(message.topic)/\(message.partition)/\(message.offset)"))
        headers.append(KafkaHeader(name: "sb-dlq-attempts", string: "\(attempts)"))
        var outgoing = KafkaOutgoingMessage(topic: message.topic + ".dlq", key: nil, value: message.value, headers: headers)
        outgoing.key = message.key
        logger.error(
            "message dead-lettered",
            metadata: ["kafka.partition": "\(message.topicPartition)", "kafka.offset": "\(message.offset)", "error": "\(error)"])
        // Losing the message is worse than stalling its partition: keep trying until the broker has it.
        var failures = 0
        while true {
            do {
                _ = try await producer.send(outgoing)
                Counter(label: "sb_kafka_dead_letters_total", dimensions: [("topic", message.topic)]).increment()
                return true
            } catch {
                failures += 1
                logger.warning("dead-letter send failed", metadata: ["error": "\(error)", "attempt": "\(failures)"])
                if (error as? KafkaError)?.code == .shutdown { return false }
                try? await Task.sleep(for: retryPolicy.backoff.delay(attempt: min(failures, 10)))
            }
        }
    }
}

/// One `sb_kafka_handled_total` handle per topic, made once: a handle costs a registry lookup.
private final class HandledCounters: Sendable {
    private let counters = Mutex<[String: Counter]>([:])

    func counter(for topic: String) -> Counter {
        counters.withLock { counters in
            if let counter = counters[topic] { return counter }
            let counter = Counter(label: "sb_kafka_handled_total", dimensions: [("topic", topic)])
            counters[topic] = counter
            return counter
        }
    }
}
