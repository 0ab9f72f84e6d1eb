import Metrics

/// The orchestrator's metric handles, each label written once (docs/configuration.md lists them).
enum OrchestratorMetrics {
    /// A conversation's record changed under a decision (compare-and-set lost); the decision is made again.
    static let recordConflicts = Counter(label: "sb_orchestrator_record_conflicts_total")
    static let runsStopped = Counter(label: "sb_orchestrator_runs_stopped_total")
    /// Runs abandoned because the results they waited for were lost on the bus (`LostResults`).
    static let runsWithLostResults = Counter(label: "sb_orchestrator_runs_results_lost_total")

    /// Tasks dispatched to a role (the team's roles, a handful).
    static func tasks(role: String) -> Counter {
        Counter(label: "sb_orchestrator_tasks_total", dimensions: [("role", role)])
    }
}
