import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime
import SwitchboardStore
import Synchronization

/// Consumes every client-facing event and fans it out through Redis to the gateways.
public enum Notifier {
    public static func run(configuration: SwitchboardConfiguration) async throws {
        let context = try await ServiceRunner.makeContext(configuration: configuration)
        let publisher = ChannelPublisher(redis: context.redis)
        try await publisher.prepare()
        // Readiness fails (and an error is logged) while Redis may evict: the notifier keeps publishing,
        // since stopping would stop every client's delivery, but operators must fix the policy.
        let evictionCheck = EvictionPolicyCheck(publisher: publisher, logger: context.logger)
        _ = await evictionCheck.isSafe()
        context.readiness.add("redis-noeviction") { await evictionCheck.isSafe() }
        let consumer = try context.makeConsumer(group: ConsumerGroups.notifier)
        // A partition's buffered events go to Redis in one pipelined round trip: one round trip per
        // event capped a partition at a few hundred events a second on a busy machine.
        let processor = KafkaEventProcessor(
            consumer: consumer, deadLetterProducer: context.producer, maximumBatch: maximumBatch,
            logger: context.logger,
            batchHandler: { try await handle(batch: $0, publisher: publisher) },
            handler: { try await handle($0, publisher: publisher) })
        // History: the store's pool runs before the consumer that writes through it (and stops after it).
        let storeConfiguration = try StoreConfiguration(url: configuration.postgresURL)
        try await HistoryStore.migrate(configuration: storeConfiguration, logger: context.logger)
        let store = HistoryStore(configuration: storeConfiguration, logger: context.logger)
        context.readiness.add("postgres") { await store.isReachable() }
        let history = HistoryRecorder(store: store)
        let historyConsumer = try context.makeConsumer(group: ConsumerGroups.history)
        let historyProcessor = KafkaEventProcessor(
            consumer: historyConsumer, deadLetterProducer: context.producer, maximumBatch: HistoryRecorder.maximumBatch,
            logger: context.logger, batchHandler: { try await history.record(batch: $0) },
            handler: { try await history.record($0) })
        try await ServiceRunner.run(
            context: context,
            services: [
                store, processor, historyProcessor,
                SystemStatusPublisher(context: context),
            ])
    }

    /// Events a partition hands over at once.
    static let maximumBatch = 128

    static func handle(_ message: KafkaConsumerMessage, publisher: ChannelPublisher) async throws {
        try await handle(batch: [message], publisher: publisher)
    }

    static func handle(batch messages: [KafkaConsumerMessage], publisher: ChannelPublisher) async throws {
        // Only the routing fields are read; `data` goes from the envelope into the frame untouched.
        let routes = try messages.map { try ClientEventRoute(envelope: $0.value) }
        let publications = routes.map { route in
            ChannelPublisher.Publication(
                eventID: route.id, channel: route.channel, frameType: route.frameType, createdAt: route.time,
                frameJSON: route.frameJSON(), ephemeral: route.ephemeral)
        }
        let outcomes = try await publisher.publish(publications)
        let now = Clock.epochMicroseconds()
        for (route, outcome) in zip(routes, outcomes) {
            switch outcome {
            case .published, .ephemeral:
                NotifierMetrics.published[route.channel.kind]?.increment()
                NotifierMetrics.eventAge.recordMicroseconds(now - route.time)
            case .duplicate:
                NotifierMetrics.duplicates.increment()
            }
        }
    }
}

/// Whether Redis' eviction policy is `noeviction`; logs an error when it is not (once per policy seen).
public final class EvictionPolicyCheck: Sendable {
    private let publisher: ChannelPublisher
    private let logger: Logger
    private let reported = Mutex<String?>(nil)

    public init(publisher: ChannelPublisher, logger: Logger) {
        self.publisher = publisher
        self.logger = logger
    }

    public func isSafe() async -> Bool {
        guard let policy = try? await publisher.evictionPolicy() else { return false }
        let safe = policy == ChannelPublisher.requiredEvictionPolicy
        let isNew = reported.withLock { reported in
            defer { reported = policy }
            return reported != policy
        }
        if isNew && !safe {
            logger.error(
                "Redis may evict keys: channel offsets and de-duplication are not safe; set maxmemory-policy noeviction (docs/reliability.md). Not ready until then.",
                metadata: ["redis.maxmemory_policy": "\(policy)"])
        } else if isNew {
            logger.debug("Redis eviction policy", metadata: ["redis.maxmemory_policy": "\(policy)"])
        }
        return safe
    }
}
