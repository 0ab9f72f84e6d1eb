import Foundation
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime
import SwitchboardTracing
import SwitchboardWorkflow

/// What the runner does with each message of its partitions, in order: a run request starts the run,
/// which completes later (the partition moves on to the run's controls meanwhile); a control, an
/// answer or an llm node's result goes to the run it names at once. A run request's offset is
/// committed only when its run finished, so a run survives the death of its runner: the next owner of
/// the partition reads the request again, and what came after it, and resumes the run from its checkpoint.
struct WorkflowCommands: Sendable {
    let context: ServiceContext
    let executor: NodeExecutor
    let store: WorkflowRunStore
    let registry = RunRegistry()

    var router: EventRouter {
        var router = EventRouter(service: context.configuration.service.rawValue)
        router.onCompletingLater(WorkflowRunRequested.self) { start($0) }
        router.on(WorkflowControlRequested.self) { envelope in
            let control = envelope.payload
            if let handle = registry.handle(control.runId) {
                handle.send(.control(control))
            } else {
                await answerNotRunning(runID: control.runId, requestID: control.requestId, action: control.action)
            }
        }
        router.on(WorkflowInputProvided.self) { envelope in
            let answer = envelope.payload
            if let handle = registry.handle(answer.runId) {
                handle.send(.answer(answer))
            } else {
                await answerNotRunning(runID: answer.runId, requestID: answer.requestId, action: "provide_input")
            }
        }
        router.on(AgentTaskCompleted.self) { envelope in
            // An llm node's result, on its run's partition (NodeExecutor names this topic and the run as
            // the task's conversation): the run waits for it in memory. None running: a late duplicate.
            let result = envelope.payload
            registry.handle(result.conversationId)?.agentResults.deliver(result, to: result.taskId)
        }
        return router
    }

    /// The run, to execute until it has an outcome (or is abandoned: another runner takes it over).
    private func start(_ request: Envelope<WorkflowRunRequested>) -> LaterCompletion? {
        let runID = request.payload.runId
        guard registry.handle(runID) == nil else { return nil }  // the same request twice
        let handle = RunHandle(runID: runID)
        registry.add(handle)
        // The request's `process` span: the run's nodes and events are its children, though the run ends later.
        let position = Tracing.position
        return LaterCompletion(abandon: { handle.send(.abandon) }) {
            let finished = await Tracing.within(position) {
                await RunExecution(
                    context: context, executor: executor, store: store, handle: handle, request: request
                ).execute()
            }
            registry.remove(handle)
            return finished
        }
    }

    /// A control for a run this instance does not run: finished, unknown, or never started.
    private func answerNotRunning(runID: String, requestID: String, action: String) async {
        let status = (try? await store.record(runID))?.status
        let message = status.map { "the run is \($0.rawValue), not running" } ?? "no such run"
        let error = WorkflowRequestError(code: status == nil ? "not_found" : "not_running", message: message)
        let statusName = status?.rawValue ?? "unknown"
        let emitter = Emitter(context: context, runID: runID)
        let id = DeterministicID.uuid(runID, "control", requestID)
        if action == "provide_input" {
            try? await emitter.emit(
                HumanInputResponse(
                    workflowId: runID, action: action, requestId: requestID, success: false, status: statusName,
                    error: error),
                id: id)
        } else {
            try? await emitter.emit(
                WorkflowControlResult(
                    workflowId: runID, action: action, requestId: requestID, success: false, status: statusName,
                    error: error),
                id: id)
        }
        try? await emitter.settle()
    }
}
