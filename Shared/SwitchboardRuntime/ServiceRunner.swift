import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import Prometheus
import ServiceLifecycle
import SwitchboardTracing
import UnixSignals
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis

/// What every service builds at start: logs, metrics, the Kafka producer, the Redis pool, readiness.
public struct ServiceContext: Sendable {
    public let configuration: SwitchboardConfiguration
    public let logger: Logger
    public let producer: KafkaProducer
    public let redis: RedisClient
    public let readiness: Readiness
    public let registry: PrometheusCollectorRegistry
    /// Set when SWITCHBOARD_OTEL_ENDPOINT is: exports the spans `Tracing` makes (swift-otel).
    public var spanExport: (any Service)?
    /// Every consumer `makeConsumer` made, for the topic keeper.
    public let consumers = ConsumerRegistry()

    public var source: EventSource {
        EventSource(service: configuration.service.rawValue, instance: configuration.instanceID)
    }

    public var kafkaClient: KafkaClientConfiguration { configuration.kafkaClient }

    /// A consumer-group member; readiness waits until the group assigned it its partitions.
    public func makeConsumer(group: String, topics: [TopicSpec]) throws -> KafkaConsumer {
        let consumer = try KafkaConsumer(
            configuration: consumerConfiguration(group: group, latency: ConsumerGroups.latency(of: group)),
            topics: topics.map(\.name), logger: logger)
        readiness.add("kafka-group:\(group)") { consumer.hasJoinedGroup }
        consumers.add(consumer)
        return consumer
    }

    /// The fetch settings of a group that needs `latency`.
    public func consumerConfiguration(group: String, latency: FetchLatency) -> KafkaConsumerConfiguration {
        var consumer = KafkaConsumerConfiguration(client: kafkaClient, groupID: group)
        consumer.apply(latency, configuration: configuration)
        return consumer
    }

    /// A member of one of the project's groups, subscribed to the topics `ConsumerGroups.subscriptions`
    /// lists for it (the table `switchboard status` measures lag over).
    public func makeConsumer(group: String) throws -> KafkaConsumer {
        try makeConsumer(group: group, topics: ConsumerGroups.topics(of: group))
    }

    /// Publishes an envelope keyed by its routing key, with its type and trace as Kafka headers, and
    /// returns once the broker has it.
    @discardableResult
    public func publish<P: EventPayload>(_ envelope: Envelope<P>, to topic: TopicSpec) async throws -> DeliveryReport {
        try await producer.send(EventBus.message(envelope, topic: topic))
    }

    public func envelope<P: EventPayload>(_ payload: P, routingKey: String, traceparent: String? = nil) -> Envelope<P> {
        Envelope(
            routingKey: routingKey,
            traceparent: traceparent ?? Tracing.causeTraceparent(orphan: "emit \(P.eventType)"),
            source: source, payload: payload)
    }
}

public enum EventBus {
    public static func message<P: EventPayload>(_ envelope: Envelope<P>, topic: TopicSpec) throws
        -> KafkaOutgoingMessage
    {
        KafkaOutgoingMessage(
            topic: topic.name, key: envelope.routingKey, value: try EnvelopeCodec.encode(envelope),
            headers: [
                KafkaHeader(name: BusHeaders.type, string: envelope.type),
                KafkaHeader(name: BusHeaders.traceparent, string: envelope.traceparent),
            ])
    }
}

extension KafkaConsumerConfiguration {
    /// Interactive and steady groups answer within their waits; background groups wait long and for 64 KiB,
    /// so an idle one costs the broker one fetch a second and a busy one gets few, large fetches.
    public mutating func apply(_ latency: FetchLatency, configuration: SwitchboardConfiguration) {
        switch latency {
        case .interactive:
            fetchWaitMaxMilliseconds = configuration.kafkaFetchWaitMilliseconds
            fetchMinBytes = configuration.kafkaFetchMinBytes
        case .steady:
            fetchWaitMaxMilliseconds = configuration.kafkaSteadyFetchWaitMilliseconds
            fetchMinBytes = configuration.kafkaFetchMinBytes
        case .background:
            fetchWaitMaxMilliseconds = configuration.kafkaBackgroundFetchWaitMilliseconds
            fetchMinBytes = 64 * 1024
        }
    }
}

extension ContractError: RetryClassifiedError {
    /// A message that cannot be decoded now never will be: dead-letter it at once.
    public var failureKind: FailureKind { .poison }
}

extension RedisError: RetryClassifiedError {
    /// Redis unreachable, restarting or out of memory: wait for it. Other error replies are the command's own.
    public var failureKind: FailureKind {
        if code == .connection || code == .closed { return .dependencyUnavailable }
        if code == .server, RedisError.unavailableReplies.contains(where: reason.hasPrefix) {
            return .dependencyUnavailable
        }
        return .transient
    }

    /// Error replies of a Redis that cannot serve now but will (loading its data, failing over, full under
    /// `noeviction`, running a long script).
    static let unavailableReplies = [
        "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "OOM", "BUSY", "NOREPLICAS",
    ]
}

public enum ServiceRunner {
    /// Bootstraps logging and metrics, connects to Kafka and Redis, and creates the topics (waiting for
    /// the broker, so services may start before it).
    public static func makeContext(configuration: SwitchboardConfiguration) async throws -> ServiceContext {
        LogSetup.bootstrap(configuration)
        let registry = MetricsSetup.bootstrap()
        var logger = Logger(label: "switchboard.\(configuration.service.rawValue)")
        logger[metadataKey: "service"] = "\(configuration.service.rawValue)"
        if configuration.developmentMode {
            logger.warning(
                "development mode (SWITCHBOARD_DEVELOPMENT_MODE): published secrets are accepted; never in production")
        }
        var producerConfiguration = KafkaProducerConfiguration(client: configuration.kafkaClient)
        producerConfiguration.lingerMilliseconds = configuration.kafkaLingerMilliseconds
        let producer = try KafkaProducer(configuration: producerConfiguration, logger: logger)
        let redis = RedisClient(
            configuration: RedisClientConfiguration(endpoint: try configuration.redisEndpoint), logger: logger)
        let readiness = Readiness()
        readiness.add("redis") { (try? await redis.ping()) != nil }
        // A partition waiting out an outage is work held back: say so to whoever routes or alerts.
        readiness.add("no-dependency-waits") { !DependencyWaits.shared.isWaiting }
        var context = ServiceContext(
            configuration: configuration, logger: logger, producer: producer, redis: redis, readiness: readiness,
            registry: registry)
        if let endpoint = configuration.otelEndpoint {
            context.spanExport = try SpanExport.bootstrap(
                endpoint: endpoint, service: configuration.service.rawValue, instance: configuration.instanceID,
                logger: logger)
        }
        try await createTopics(producer: producer, logger: logger)
        return context
    }

    static func createTopics(producer: KafkaProducer, logger: Logger) async throws {
        let topics = TopicKeeper.topics.map { (name: $0.name, partitions: $0.partitions) }
        var attempt = 0
        let backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(3))
        while true {
            do {
                try await producer.createTopics(topics)
                return
            } catch {
                attempt += 1
                if attempt >= 40 { throw error }
                logger.info(
                    "waiting for Kafka to create topics", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                try await Task.sleep(for: backoff.delay(attempt: attempt))
            }
        }
    }

    /// Runs `services`, the public HTTP server (`/healthz` added to `router`, or a router of its own) and
    /// the admin server (`/healthz`, `/readyz`, `/metrics` on the admin port) in one ServiceGroup until SIGTERM or SIGINT; then each stops in reverse order: the HTTP
    /// server first, the workers finish in-flight messages and commit, the producer flushes last.
    public static func run(context: ServiceContext, services: [any Service]) async throws {
        try await run(context: context, services: services, router: Router<BasicRequestContext>())
    }

    /// `stoppingBeforeServer` hear of shutdown before the HTTP server stops (the gateway closes its
    /// clients' connections there, while it can still write to them).
    public static func run<Context: RequestContext>(
        context: ServiceContext, services: [any Service], router: Router<Context>, server: HTTPServerBuilder = .http1(),
        stoppingBeforeServer: [any Service] = []
    ) async throws where Context.Source == ApplicationRequestContextSource {
        let configuration = context.configuration
        router.addHealthRoute(service: configuration.service.rawValue)
        let application = Application(
            router: router, server: server,
            configuration: .init(
                address: .hostname(configuration.httpHost, port: configuration.httpPort),
                serverName: "switchboard-\(configuration.service.rawValue)", reuseAddress: true),
            onServerRunning: { channel in
                context.logger.info(
                    "listening", metadata: ["http.address": "\(channel.localAddress?.description ?? "?")"])
            },
            logger: context.logger)
        let adminRouter = Router()
        adminRouter.addAdminRoutes(
            readiness: context.readiness, registry: context.registry, service: configuration.service.rawValue)
        let admin = Application(
            router: adminRouter, server: .http1(configuration: .init(idleTimeout: .seconds(30))),
            configuration: .init(
                address: .hostname(configuration.adminHost, port: configuration.adminPort),
                serverName: "switchboard-\(configuration.service.rawValue)-admin", reuseAddress: true),
            onServerRunning: { channel in
                context.logger.info(
                    "admin listening", metadata: ["http.admin_address": "\(channel.localAddress?.description ?? "?")"])
            },
            logger: context.logger)
        let topicKeeper = TopicKeeper(producer: context.producer, consumers: context.consumers, logger: context.logger)
        context.readiness.add("kafka-topics") { topicKeeper.isReady }
        // Stopped in reverse order: the exporter last, with the spans of everything before it.
        var members: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let export = context.spanExport { members.append(.init(service: export)) }
        members += [
            .init(service: ClosingService(context: context)),
            .init(service: HeartbeatService(context: context)),
            .init(service: topicKeeper),
        ]
        members += services.map { .init(service: $0) }
        members += [.init(service: admin), .init(service: application)]
        members += stoppingBeforeServer.map { .init(service: $0) }
        members.append(.init(service: DrainingService(readiness: context.readiness)))
        let group = ServiceGroup(
            configuration: .init(
                services: members,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: context.logger))
        context.logger.info(
            "starting", metadata: ["instance": "\(configuration.instanceID)", "librdkafka": "\(librdkafkaVersion)"])
        do {
            try await group.run()
        } catch {
            // E.g. the HTTP port is taken: every other service was cancelled, and the process exits non-zero.
            context.logger.error("stopped by an error", metadata: ["error": "\(error)"])
            throw error
        }
        context.logger.info("stopped")
    }
}

/// Flushes the producer and closes Redis after everything that uses them has stopped.
struct ClosingService: Service {
    let context: ServiceContext

    func run() async throws {
        try? await gracefulShutdown()
        await context.producer.shutdown()
        await context.redis.close()
    }
}

/// First to hear of shutdown: report not ready at once.
struct DrainingService: Service {
    let readiness: Readiness

    func run() async throws {
        try? await gracefulShutdown()
        readiness.startDraining()
    }
}
