import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime

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
