import SwitchboardContracts
import SwitchboardWorkflow

/// What reaches a running run from outside, in order.
enum RunSignal: Sendable {
    case nodeFinished(node: String, result: Result<NodeResult, NodeFailure>, startedAt: Int64)
    case control(WorkflowControlRequested)
    case answer(WorkflowInputProvided)
    /// Stop executing without recording an outcome: another runner takes the run over.
    case abandon
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
