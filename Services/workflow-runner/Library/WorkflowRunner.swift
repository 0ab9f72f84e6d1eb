import ArgumentParser
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
    /// An http node's timeout (also the most its config may ask for) and retries when its config names none.
    public var httpTimeout: Duration = .seconds(10)
    public var httpRetries = 2
    /// Runs (records and checkpoints) are kept this long after their last change.
    public var retentionSeconds = 7 * 24 * 3600
    /// Destinations an http node may reach although they are loopback, private, link-local… (docs/workflows.md#egress).
    public var egress = EgressPolicy()
    /// Redirects an http node follows, each re-checked; 0: none (its 3xx is the answer).
    public var httpMaximumRedirects = 0
    /// The largest response body an http node reads.
    public var httpMaximumResponseBytes = 1 << 20
    /// The largest rendered template and the largest outputs of any node.
    public var maximumOutputBytes = 256 * 1024
    /// Runs of one user executing (running or paused) at once; more fail at their start.
    public var maximumRunsPerUser = 10
    /// Times a run is taken over (resumed by a runner after its runner died or gave it up) before it fails.
    public var maximumTakeovers = 5

    public init() {}

    /// Flags and environment for the runner's own settings (see docs/configuration.md).
    public struct Options: ParsableArguments {
        @Option(
            help:
                "Seconds an llm node waits for its answer (env SWITCHBOARD_WORKFLOW_LLM_TIMEOUT_SECONDS; default 120).")
        public var llmTimeoutSeconds: Double?
        @Option(help: "Days runs are kept in Redis (env SWITCHBOARD_WORKFLOW_RETENTION_DAYS; default 7).")
        public var retentionDays: Int?
        @Option(
            help:
                "Hosts, addresses or CIDRs (each optionally :port), comma-separated, http nodes may reach although private or loopback (env SWITCHBOARD_WORKFLOW_EGRESS_ALLOW; default none)."
        )
        public var egressAllow: String?
        @Option(
            help:
                "Redirects an http node follows, each re-checked (env SWITCHBOARD_WORKFLOW_HTTP_MAX_REDIRECTS; default 0)."
        )
        public var httpMaxRedirects: Int?
        @Option(
            help: "Largest http response body read (env SWITCHBOARD_WORKFLOW_HTTP_MAX_RESPONSE_BYTES; default 1048576)."
        )
        public var httpMaxResponseBytes: Int?
        @Option(
            help: "Seconds an http node may take, at most (env SWITCHBOARD_WORKFLOW_HTTP_TIMEOUT_SECONDS; default 10).")
        public var httpTimeoutSeconds: Double?
        @Option(
            help:
                "Largest rendered template or node output (env SWITCHBOARD_WORKFLOW_MAX_OUTPUT_BYTES; default 262144).")
        public var maxOutputBytes: Int?
        @Option(help: "Runs per user executing at once (env SWITCHBOARD_WORKFLOW_MAX_RUNS_PER_USER; default 10).")
        public var maxRunsPerUser: Int?
        @Option(help: "Takeovers of one run before it fails (env SWITCHBOARD_WORKFLOW_MAX_TAKEOVERS; default 5).")
        public var maxTakeovers: Int?

        public init() {}

        public func settings() throws -> WorkflowRunnerSettings {
            var settings = WorkflowRunnerSettings()
            let timeout = try setting(llmTimeoutSeconds, environment: "WORKFLOW_LLM_TIMEOUT_SECONDS", default: 120.0)
            let days = try setting(retentionDays, environment: "WORKFLOW_RETENTION_DAYS", default: 7)
            guard timeout > 0, days > 0 else {
                throw ConfigurationError("the llm timeout and the retention must be positive")
            }
            settings.llmTimeout = .milliseconds(Int64(timeout * 1000))
            settings.retentionSeconds = days * 24 * 3600
            do {
                settings.egress = try EgressPolicy(
                    allowList: try setting(egressAllow, environment: "WORKFLOW_EGRESS_ALLOW", default: ""))
            } catch let error as EgressError {
                throw ConfigurationError("SWITCHBOARD_WORKFLOW_EGRESS_ALLOW: \(error.description)")
            }
            settings.httpMaximumRedirects = try setting(
                httpMaxRedirects, environment: "WORKFLOW_HTTP_MAX_REDIRECTS", default: 0)
            settings.httpMaximumResponseBytes = try setting(
                httpMaxResponseBytes, environment: "WORKFLOW_HTTP_MAX_RESPONSE_BYTES",
                default: settings.httpMaximumResponseBytes)
            let httpSeconds = try setting(
                httpTimeoutSeconds, environment: "WORKFLOW_HTTP_TIMEOUT_SECONDS", default: 10.0)
            settings.maximumOutputBytes = try setting(
                maxOutputBytes, environment: "WORKFLOW_MAX_OUTPUT_BYTES", default: settings.maximumOutputBytes)
            settings.maximumRunsPerUser = try setting(
                maxRunsPerUser, environment: "WORKFLOW_MAX_RUNS_PER_USER", default: settings.maximumRunsPerUser)
            settings.maximumTakeovers = try setting(
                maxTakeovers, environment: "WORKFLOW_MAX_TAKEOVERS", default: settings.maximumTakeovers)
            guard (0...20).contains(settings.httpMaximumRedirects), settings.httpMaximumResponseBytes > 0,
                httpSeconds > 0,
                settings.maximumOutputBytes >= 1024, settings.maximumRunsPerUser > 0, settings.maximumTakeovers >= 0
            else {
                throw ConfigurationError(
                    "workflow limits: redirects 0-20, response bytes and timeout positive, output ≥ 1024 bytes, runs per user ≥ 1, takeovers ≥ 0"
                )
            }
            settings.httpTimeout = .milliseconds(Int64(httpSeconds * 1000))
            return settings
        }
    }
}

/// Runs workflows: every instance joins the workflow-runner group on `Topics.workflowCommands`, where
/// the runs, their controls and their llm nodes' results travel keyed by run id. The instance that owns
/// a run's partition executes it and applies its controls and results in order; a run's start message is committed only once the run finished, so
/// the instance that inherits the partition after a crash resumes it from its Redis checkpoint. Runs
/// are also kept in PostgreSQL, for history.
public enum WorkflowRunner {
    public static func run(configuration: SwitchboardConfiguration, settings: WorkflowRunnerSettings = .init())
        async throws
    {
        let context = try await ServiceRunner.makeContext(configuration: configuration)
        let consumer = try context.makeConsumer(group: ConsumerGroups.workflowRunner)
        let storeConfiguration = try StoreConfiguration(url: configuration.postgresURL)
        try await HistoryStore.migrate(configuration: storeConfiguration, logger: context.logger)
        let archive = HistoryStore(configuration: storeConfiguration, logger: context.logger)
        context.readiness.add("postgres") { await archive.isReachable() }
        let store = WorkflowRunStore(
            redis: context.redis, archive: archive, retentionSeconds: settings.retentionSeconds)
        let commands = WorkflowCommands(
            context: context, executor: NodeExecutor(context: context, settings: settings), store: store)
        let processor = KafkaEventProcessor(
            consumer: consumer, deadLetterProducer: context.producer, logger: context.logger, router: commands.router)
        // Listed before the processor, so the pool shuts down after the last run. Each http node has an
        // HTTP client of its own (its vetted address is that client's DNS override; see Egress.swift).
        try await ServiceRunner.run(context: context, services: [archive, processor])
    }
}
