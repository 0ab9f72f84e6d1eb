import ArgumentParser
import Foundation
import Logging
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardStore

/// Runs the AI team's collaboration: consumes user messages and the roles' results and decides, from the
/// conversation's record in Redis, what happens next. Any instance can take any step.
public enum Orchestrator {
    public struct Options: ParsableArguments {
        @Option(help: "The role team's JSON file (env SWITCHBOARD_TEAM_FILE; default: the built-in chat-centre team).")
        public var teamFile: String?

        public init() {}

        public func team(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Team {
            let path = teamFile ?? environment["SWITCHBOARD_TEAM_FILE"].flatMap { $0.isEmpty ? nil : $0 }
            guard let path else { return .chatCentre }
            return try Team.load(path: path)
        }
    }

    public static func run(configuration: SwitchboardConfiguration, team: Team) async throws {
        try team.validate()
        let context = try await ServiceRunner.makeContext(configuration: configuration)
        let consumer = try context.makeConsumer(group: ConsumerGroups.orchestrator)
        let store = HistoryStore(
            configuration: try StoreConfiguration(url: configuration.postgresURL), logger: context.logger)
        context.readiness.add("postgres") { await store.isReachable() }
        let runner = CollaborationRunner(
            context: context, engine: CollaborationEngine(team: team),
            history: HistoryContext(store: store, logger: context.logger))
        var router = EventRouter(service: configuration.service.rawValue)
        router.on(ChatMessageSubmitted.self) { try await runner.handle($0) }
        router.on(AgentTaskCompleted.self) { try await runner.handle($0) }
        router.on(ChatInterruptRequested.self) { try await runner.handle($0) }
        router.on(ChatRoleFocusRequested.self) { try await runner.handle($0) }
        let processor = KafkaEventProcessor(
            consumer: consumer, deadLetterProducer: context.producer, logger: context.logger, router: router)
        context.logger.info("team", metadata: ["team.name": "\(team.name)", "team.roles": "\(team.roles.map(\.name))"])
        try await ServiceRunner.run(
            context: context,
            services: [store, TeamAnnouncer(team: team, redis: context.redis, logger: context.logger), processor])
    }
}
