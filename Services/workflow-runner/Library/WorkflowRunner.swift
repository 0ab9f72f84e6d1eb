import ArgumentParser
import AsyncHTTPClient
import Logging
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime
import SwitchboardStore
import SwitchboardWorkflow

public struct WorkflowRunnerSettings: Sendable {
    /// Longest an llm node waits for the agent-worker's answer.
    public var llmTimeout: Duration = .seconds(120)
    /// How often an llm node looks for its answer in Redis.
    public var agentResultPoll: Duration = .milliseconds(10)
    /// An http node's timeout and retries when its config names none.
    public var httpTimeout: Duration = .seconds(10)
    public var httpRetries = 2
    /// Runs (records and checkpoints) are kept this long after their last change.
    public var retentionSeconds = 7 * 24 * 3600

    public init() {}

    /// Flags and environment for the runner's own settings (see docs/configuration.md).
    public struct Options: ParsableArguments {
        @Option(help: "Seconds an llm node waits for its answer (env SWITCHBOARD_WORKFLOW_LLM_TIMEOUT_SECONDS; default 120).")
        public var llmTimeoutSeconds: Double?
        @Option(help: "Days runs are kept in Redis (env SWITCHBOARD_WORKFLOW_RETENTION_DAYS; default 7).")
        public var retentionDays: Int?

        public init() {}

        public func settings() throws -> WorkflowRunnerSettings {
            var settings = WorkflowRunnerSettings()
            let timeout = try setting(llmTimeoutSeconds, environment: "WORKFLOW_LLM_TIMEOUT_SECONDS", default: 120.0)
            let days = try setting(retentionDays, environment: "WORKFLOW_RETENTION_DAYS", default: 7)
            guard timeout > 0, days > 0 else { throw ConfigurationError("the llm timeout and the retention must be positive") }
            settings.llmTimeout = .milliseconds(Int64(timeout * 1000))
            settings.retentionSeconds = days * 24 * 3600
            return settings
        }
    }
}

/// Runs workflows: every instance joins the workflow-runner group on `Topics.workflowCommands` (and
/// reads `Topics.agentResults` for its llm nodes). The instance that owns a run's partition executes it
/// and applies its controls in order; a run's start message is committed only once the run finished, so
/// the instance that inherits the partition after a crash resumes it from its Redis checkpoint. Runs
/// are also kept in PostgreSQL, for history.
public enum WorkflowRunner {
    public static func run(configuration: SwitchboardConfiguration, settings: WorkflowRunnerSettings = .init()) async throws {
        let context = try await ServiceRunner.makeContext(configuration: configuration)
        let consumer = try context.makeConsumer(group: ConsumerGroups.workflowRunner)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let storeConfiguration = try StoreConfiguration(url: configuration.postgresURL)
        try await HistoryStore.migrate(configuration: storeConfiguration, logger: context.logger)
        let archive = HistoryStore(configuration: storeConfiguration, logger: context.logger)
        context.readiness.add("postgres") { await archive.isReachable() }
        let store = WorkflowRunStore(redis: context.redis, archive: archive, retentionSeconds: settings.retentionSeconds)
        let loop = CommandLoop(
            consumer: consumer, context: context,
            executor: NodeExecutor(context: context, store: store, http: http, settings: settings), store: store)
        // Listed before the loop, so the pool and the HTTP client shut down after the last run.
        try await ServiceRunner.run(context: context, services: [archive, HTTPClientService(client: http), loop])
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
