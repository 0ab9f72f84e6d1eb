import Metrics

/// The agent-worker's metric handles, each label written once (docs/configuration.md lists them).
enum AgentWorkerMetrics {
    static let tasksCompleted = Counter(label: "sb_agent_tasks_completed_total")
    static let tasksStopped = Counter(label: "sb_agent_tasks_stopped_total")
    /// A task that came again: already done (not run twice), or cut short and resumed.
    static let tasksRedeliveredDone = tasksRedelivered("done")
    static let tasksRedeliveredResumed = tasksRedelivered("resumed")
    static let deviceToolCalls = Counter(label: "sb_agent_device_tool_calls_total")
    static let deviceToolFailures = Counter(label: "sb_agent_device_tool_failures_total")

    /// A role's answer that failed, by provider kind (`offline`, `openai`).
    static func providerFailures(provider: String) -> Counter {
        Counter(label: "sb_agent_provider_failures_total", dimensions: [("provider", provider)])
    }

    private static func tasksRedelivered(_ outcome: String) -> Counter {
        Counter(label: "sb_agent_tasks_redelivered_total", dimensions: [("outcome", outcome)])
    }
}
