import Metrics
import SwitchboardWorkflow

/// The workflow-runner's metric handles, each label written once (docs/configuration.md lists them).
enum WorkflowRunnerMetrics {
    /// Runs executing in this process.
    static let runsActive = Meter(label: "sb_workflow_runs_active")
    static let nodes: [NodeStatus: Counter] = Dictionary(
        uniqueKeysWithValues: [NodeStatus.completed, .failed, .skipped].map {
            ($0, Counter(label: "sb_workflow_nodes_total", dimensions: [("status", $0.rawValue)]))
        })
    static let runs: [RunStatus: Counter] = Dictionary(
        uniqueKeysWithValues: [RunStatus.completed, .failed, .stopped].map {
            ($0, Counter(label: "sb_workflow_runs_total", dimensions: [("status", $0.rawValue)]))
        })
}
