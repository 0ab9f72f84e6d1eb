import Metrics
import SwitchboardContracts
import SwitchboardWorkflow
import Synchronization

/// The runs executing in this process, by id.
final class RunRegistry: Sendable {
    private let runs = Mutex<[String: RunHandle]>([:])

    func add(_ handle: RunHandle) {
        runs.withLock { $0[handle.runID] = handle }
        WorkflowRunnerMetrics.runsActive.increment()
    }

    func remove(_ handle: RunHandle) {
        if runs.withLock({ $0.removeValue(forKey: handle.runID) }) != nil {
            WorkflowRunnerMetrics.runsActive.decrement()
        }
    }

    func handle(_ runID: String) -> RunHandle? { runs.withLock { $0[runID] } }
}
