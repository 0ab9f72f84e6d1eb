import Metrics
import Synchronization
import SwitchboardContracts
import SwitchboardWorkflow

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

/// What reaches a running run from outside, in order.
enum RunSignal: Sendable {
    case nodeFinished(node: String, result: Result<NodeResult, NodeFailure>, startedAt: Int64)
    case control(WorkflowControlRequested)
    case answer(WorkflowInputProvided)
    /// Stop executing without recording an outcome: another runner takes the run over.
    case abandon
}

struct NodeFailure: Error, Sendable {
    var message: String
}

/// A run's signal queue, the answers of its human_input nodes (by node) and the results of its llm
/// nodes' agent tasks (by task id).
final class RunHandle: Sendable {
    let runID: String
    let signals: AsyncStream<RunSignal>
    private let continuation: AsyncStream<RunSignal>.Continuation
    let answers = Mailbox<JSONValue>()
    let agentResults = Mailbox<AgentTaskCompleted>()

    init(runID: String) {
        self.runID = runID
        let (signals, continuation) = AsyncStream.makeStream(of: RunSignal.self)
        self.signals = signals
        self.continuation = continuation
    }

    func send(_ signal: RunSignal) { continuation.yield(signal) }
}
