import Logging
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardKafka
import Synchronization

/// Keeps the bus's topics in place while the service runs. A broker that lost them (Tansu restarted
/// with its in-memory log, a topic deleted by mistake) otherwise leaves every send failing with an
/// unknown partition and every consumer idle until someone restarts the stack. Every `interval` it
/// asks the broker which topics exist and creates the missing ones; the `kafka-topics` readiness
/// check is false from a check that found one missing (or could not ask) until one finds them all.
public final class TopicKeeper: Service, Sendable {
    private let producer: KafkaProducer
    private let logger: Logger
    private let interval: Duration
    private let allPresent = Atomic<Bool>(true)
    /// Set once a check found every topic: topics missing after that mean the broker lost its state.
    private let sawAllTopics = Atomic<Bool>(false)
    public static let topics = Topics.all.flatMap { [$0, $0.deadLetter] }

    private let consumers: ConsumerRegistry

    public init(
        producer: KafkaProducer, consumers: ConsumerRegistry = ConsumerRegistry(), logger: Logger,
        interval: Duration = .seconds(5)
    ) {
        self.producer = producer
        self.consumers = consumers
        self.logger = logger
        self.interval = interval
    }

    public var isReady: Bool { allPresent.load(ordering: .relaxed) }

    public func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: self.interval) }
            guard !Task.isShuttingDownGracefully, !Task.isCancelled else { break }
            await check()
        }
    }

    /// One look at the broker, creating what is missing.
    public func check() async {
        do {
            let existing = try await producer.partitionCounts(of: Self.topics.map(\.name))
            let missing = Self.topics.filter { existing[$0.name] == nil }
            guard !missing.isEmpty else {
                allPresent.store(true, ordering: .relaxed)
                sawAllTopics.store(true, ordering: .relaxed)
                // Members the group forgot while the topics were gone join again now that they are back.
                consumers.all.forEach { $0.rejoinIfAssignmentWasLost() }
                return
            }
            allPresent.store(false, ordering: .relaxed)
            logger.warning(
                "Kafka topics are missing; creating them", metadata: ["kafka.topics": "\(missing.map(\.name))"])
            try await producer.createTopics(missing.map { (name: $0.name, partitions: $0.partitions) })
            // A broker that forgot its topics forgot the producer's id as well (Tansu restarted empty).
            if sawAllTopics.exchange(false, ordering: .relaxed) {
                producer.renew(reason: "the broker lost its topics")
            }
        } catch {
            allPresent.store(false, ordering: .relaxed)
            logger.warning("cannot check the Kafka topics", metadata: ["error": "\(error)"])
        }
    }
}

/// The consumers of one process, for `TopicKeeper` to tell when the bus's topics are back.
public final class ConsumerRegistry: Sendable {
    private let consumers = Mutex<[KafkaConsumer]>([])

    public init() {}

    public func add(_ consumer: KafkaConsumer) {
        consumers.withLock { $0.append(consumer) }
    }

    var all: [KafkaConsumer] { consumers.withLock { $0 } }
}
