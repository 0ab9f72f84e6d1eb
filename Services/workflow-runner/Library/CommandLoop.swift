import Foundation
import Logging
import Metrics
import Synchronization
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime
import SwitchboardWorkflow

/// What the runner does with each message of its partitions, in order: a run request starts the run,
/// which completes later (the partition moves on to the run's controls meanwhile); a control or an
/// answer goes to the run it names at once. A run request's offset is committed only when its run
/// finished, so a run survives the death of its runner: the next owner of the partition reads the
/// request again and resumes the run from its checkpoint.
struct WorkflowCommands: Sendable {
    let context: ServiceContext
    let executor: NodeExecutor
    let store: WorkflowRunStore
    let registry = RunRegistry()

    var router: EventRouter {
        var router = EventRouter(service: context.configuration.service.rawValue)
        router.on(WorkflowRunRequested.self, completingLater: { start($0) })
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
        router.on(AgentTaskCompleted.self) { try await storeAgentResult($0.payload) }
        return router
    }

    /// The run, to execute until it has an outcome (or is abandoned: another runner takes it over).
    private func start(_ request: Envelope<WorkflowRunRequested>) -> LaterCompletion? {
        let runID = request.payload.runId
        guard registry.handle(runID) == nil else { return nil }  // the same request twice
        let handle = RunHandle(runID: runID)
        registry.add(handle)
        return LaterCompletion(abandon: { handle.send(.abandon) }) {
            let finished = await RunExecution(context: context, executor: executor, store: store, handle: handle, request: request).execute()
            registry.remove(handle)
            return finished
        }
    }

    /// A result for one of our llm nodes: kept in Redis, where the node (on whichever instance) finds it.
    private func storeAgentResult(_ result: AgentTaskCompleted) async throws {
        guard result.isWorkflowTask else { return }
        let json = String(decoding: try JSONEncoder().encode(result), as: UTF8.self)
        try await store.storeAgentResult(taskID: result.taskId, json: json)
    }

    /// A control for a run this instance does not run: finished, unknown, or never started.
    private func answerNotRunning(runID: String, requestID: String, action: String) async {
        let status = (try? await store.record(runID))?.status
        let message = status.map { "the run is \($0.rawValue), not running" } ?? "no such run"
        let data: JSONValue = [
            "workflow_id": .string(runID), "action": .string(action), "request_id": .string(requestID), "success": false,
            "status": .string(status?.rawValue ?? "unknown"),
            "error": ["code": .string(status == nil ? "not_found" : "not_running"), "message": .string(message)],
        ]
        let frame = action == "provide_input" ? WorkflowFrame.inputResponse : WorkflowFrame.controlResult
        let emitter = Emitter(context: context, runID: runID)
        try? await emitter.emit(frame, data, id: DeterministicID.uuid(runID, "control", requestID))
        try? await emitter.settle()
    }
}

/// The runs executing in this process, by id.
final class RunRegistry: Sendable {
    private let runs = Mutex<[String: RunHandle]>([:])
    private let gauge = Meter(label: "sb_workflow_runs_active")

    func add(_ handle: RunHandle) {
        runs.withLock { $0[handle.runID] = handle }
        gauge.increment()
    }

    func remove(_ handle: RunHandle) {
        if runs.withLock({ $0.removeValue(forKey: handle.runID) }) != nil { gauge.decrement() }
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

/// A run's signal queue, and the human_input nodes waiting for their answer.
final class RunHandle: Sendable {
    let runID: String
    let signals: AsyncStream<RunSignal>
    private let continuation: AsyncStream<RunSignal>.Continuation
    private let answers = Mutex<[String: AnswerSlot]>([:])

    private enum AnswerSlot {
        case waiting(CheckedContinuation<JSONValue, any Error>)
        case answered(JSONValue)
    }

    init(runID: String) {
        self.runID = runID
        let (signals, continuation) = AsyncStream.makeStream(of: RunSignal.self)
        self.signals = signals
        self.continuation = continuation
    }

    func send(_ signal: RunSignal) { continuation.yield(signal) }

    /// Waits for the answer to a human_input node (or takes the one that came first).
    func answer(for node: String) async throws -> JSONValue {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let ready = answers.withLock { answers -> JSONValue? in
                    if case .answered(let value)? = answers[node] {
                        answers[node] = nil
                        return value
                    }
                    answers[node] = .waiting(continuation)
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiting = answers.withLock { answers -> CheckedContinuation<JSONValue, any Error>? in
                guard case .waiting(let continuation)? = answers[node] else { return nil }
                answers[node] = nil
                return continuation
            }
            waiting?.resume(throwing: CancellationError())
        }
    }

    func provide(_ value: JSONValue, for node: String) {
        let waiting = answers.withLock { answers -> CheckedContinuation<JSONValue, any Error>? in
            if case .waiting(let continuation)? = answers[node] {
                answers[node] = nil
                return continuation
            }
            answers[node] = .answered(value)
            return nil
        }
        waiting?.resume(returning: value)
    }
}

/// Publishes a run's client events on its channel, with ids derived from what they say.
///
/// An event is handed to the producer and the run goes on: the events of one step share the
/// producer's batches instead of each waiting for the broker's acknowledgement (the idempotent
/// producer keeps their order on the run's partition). `settle()` waits for what is outstanding;
/// a run settles before its outcome counts, and an event whose delivery failed is sent again then.
final class Emitter: Sendable {
    let context: ServiceContext
    let runID: String
    private let outstanding = Mutex<[(message: KafkaOutgoingMessage, delivery: DeliveryFuture)]>([])
    /// A run that emits faster than the broker acknowledges waits once this many are outstanding.
    private static let outstandingLimit = 256

    init(context: ServiceContext, runID: String) {
        self.context = context
        self.runID = runID
    }

    func emit(_ frameType: String, _ data: JSONValue, id: UUID) async throws {
        let event = ClientEvent(channel: .workflow(runID), frameType: frameType, data: data)
        let envelope = Envelope(id: id, routingKey: runID, source: context.source, payload: event)
        let message = try EventBus.message(envelope, topic: Topics.clientEvents)
        let delivery = try await context.producer.enqueue(message)
        let count = outstanding.withLock {
            $0.append((message, delivery))
            return $0.count
        }
        if count > Self.outstandingLimit { try await settle() }
    }

    /// Returns once every event emitted so far is with the broker; a failed one is sent again
    /// (awaited, with retries), so nothing emitted is lost, at the price of its order.
    func settle() async throws {
        let waiting = outstanding.withLock { pending in
            defer { pending = [] }
            return pending
        }
        for (message, delivery) in waiting {
            do {
                _ = try await delivery.report()
            } catch {
                context.logger.warning("a workflow event's delivery failed; sending it again", metadata: ["error": "\(error)"])
                _ = try await retrying(context.logger) { [context] in try await context.producer.send(message) }
            }
        }
    }
}
