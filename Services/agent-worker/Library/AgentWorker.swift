import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import Synchronization

/// Consumes agent tasks, streams each role's answer to its conversation and reports the result to the
/// task's requester, on the topic its `replyTo` names.
public enum AgentWorker {
    public struct Options: ParsableArguments {
        @Option(help: "Offline engine tokens per second, 0 for instant (env SWITCHBOARD_AGENT_TOKEN_RATE; default 40).")
        public var tokenRate: Double?
        @Option(
            help:
                "Offline engine delay before the first token in ms (env SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS; default 150)."
        )
        public var firstTokenDelayMs: Int?
        @Option(
            help:
                "Tasks run at once per partition, so a conversation's parallel roles overlap (env SWITCHBOARD_AGENT_CONCURRENCY; default 16)."
        )
        public var concurrency: Int?
        @Option(
            help:
                "OpenAI-compatible servers this worker may call, BASE_URL[=KEY_VARIABLE],… (env SWITCHBOARD_AGENT_PROVIDERS; default none)."
        )
        public var providers: String?

        public init() {}

        public func engineSettings() throws -> OfflineEngine.Settings {
            OfflineEngine.Settings(
                tokensPerSecond: try setting(tokenRate, environment: "AGENT_TOKEN_RATE", default: 40),
                firstTokenDelay: .milliseconds(
                    try setting(firstTokenDelayMs, environment: "AGENT_FIRST_TOKEN_DELAY_MS", default: 150)))
        }

        /// The servers and keys this worker uses (none unless configured: the offline engine only).
        public func providerAllowList() throws -> ProviderAllowList {
            do {
                return try ProviderAllowList(
                    parsing: try setting(providers, environment: "AGENT_PROVIDERS", default: ""))
            } catch let error as ProviderAllowListError {
                throw ConfigurationError(error.description)
            }
        }

        public func tasksPerPartition() throws -> Int {
            let value = try setting(concurrency, environment: "AGENT_CONCURRENCY", default: 16)
            guard (1...1024).contains(value) else {
                throw ConfigurationError("SWITCHBOARD_AGENT_CONCURRENCY must be 1…1024")
            }
            return value
        }
    }

    public static func run(
        configuration: SwitchboardConfiguration, engine: OfflineEngine, tasksPerPartition: Int = 16,
        allowList: ProviderAllowList = ProviderAllowList()
    ) async throws {
        let context = try await ServiceRunner.makeContext(configuration: configuration)
        let consumer = try context.makeConsumer(group: ConsumerGroups.agentWorker)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: Providers.httpConfiguration)
        let subscriber = RedisSubscriber(endpoint: try configuration.redisEndpoint, logger: context.logger)
        let deviceTools = DeviceToolCaller(
            redis: context.redis, subscriber: subscriber, instance: configuration.instanceID)
        let providers = Providers(
            offline: OfflineProvider(engine: engine), client: http, breakers: CircuitBreakers(), allowList: allowList,
            deviceTools: deviceTools)
        let stops = RunStops()
        let listener = RunStopListener(subscriber: subscriber, stops: stops)
        context.readiness.add("run-stops") { listener.isListening }
        let processor = KafkaEventProcessor(
            consumer: consumer, deadLetterProducer: context.producer, concurrencyPerPartition: tasksPerPartition,
            logger: context.logger
        ) { message in
            let envelope = try EnvelopeCodec.decode(AgentTaskRequested.self, from: message.value)
            try await StreamingTask(context: context, providers: providers, stops: stops, envelope: envelope).run()
        }
        context.logger.info(
            "offline engine", metadata: ["engine.tokens_per_second": "\(engine.settings.tokensPerSecond)"])
        // Listed before the processor, so the HTTP client shuts down after the last task.
        try await ServiceRunner.run(
            context: context, services: [HTTPClientService(client: http), subscriber, listener, deviceTools, processor])
    }
}

/// The stop handlers of the tasks running in this process, by run.
final class RunStops: Sendable {
    private let handlers = Mutex<[String: [UUID: @Sendable () -> Void]]>([:])

    func register(runID: String, _ handler: @escaping @Sendable () -> Void) -> UUID {
        let id = UUID()
        handlers.withLock { $0[runID, default: [:]][id] = handler }
        return id
    }

    func unregister(runID: String, id: UUID) {
        handlers.withLock { handlers in
            handlers[runID]?.removeValue(forKey: id)
            if handlers[runID]?.isEmpty == true { handlers.removeValue(forKey: runID) }
        }
    }

    func stop(runID: String) {
        let stopping = handlers.withLock { $0[runID].map { Array($0.values) } ?? [] }
        for handler in stopping { handler() }
    }
}

/// Hears the orchestrator's stop messages and stops this process's tasks of that run.
final class RunStopListener: Service, Sendable {
    let subscriber: RedisSubscriber
    let stops: RunStops
    private let listening = Atomic<Bool>(false)

    init(subscriber: RedisSubscriber, stops: RunStops) {
        self.subscriber = subscriber
        self.stops = stops
    }

    var isListening: Bool { listening.load(ordering: .relaxed) }

    func run() async throws {
        await subscriber.holdSubscription(
            RunControl.stopChannel, subscribed: { self.listening.store(true, ordering: .relaxed) }
        ) {
            [stops] message in stops.stop(runID: String(decoding: message, as: UTF8.self))
        }
        listening.store(false, ordering: .relaxed)
    }
}

/// Shuts the HTTP client down at the end.
struct HTTPClientService: Service {
    let client: HTTPClient

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}

/// The provider each task names: the offline engine, or an OpenAI-compatible server of the worker's
/// allow-list behind retries and a circuit breaker. API keys come from this process's environment, by
/// the name the allow-list gives (a task's `apiKeyEnv` is not read).
struct Providers: Sendable {
    let offline: OfflineProvider
    let client: HTTPClient
    let breakers: CircuitBreakers
    let allowList: ProviderAllowList
    /// Voice devices' MCP tools (DeviceTools.swift).
    let deviceTools: DeviceToolCaller
    var environment: [String: String] = ProcessInfo.processInfo.environment

    /// Connect within 5 s; a silent stream fails after 60 s. Failed connections are not retried by the
    /// client itself: ResilientProvider retries with its own backoff and feeds the circuit breaker.
    static var httpConfiguration: HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(5), read: .seconds(60)))
        configuration.connectionPool.retryConnectionEstablishment = false
        return configuration
    }

    func provider(for spec: ProviderSpec?) -> any ChatProvider {
        guard let spec, spec.kind == "openai" else { return offline }
        guard let allowed = allowList.entry(for: spec.baseURL) else {
            return RefusedProvider(baseURL: spec.baseURL ?? "(none)")
        }
        let key = allowed.keyVariable.flatMap { environment[$0] }
        return ResilientProvider(
            base: OpenAIProvider(spec: spec, apiKey: key, client: client), breakerKey: spec.breakerKey,
            breakers: breakers)
    }
}
