import Foundation
import Logging
import Metrics
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime
import SwitchboardTracing
import SwitchboardWorkflow

/// Executes one run: new, or resumed from its checkpoint by the runner that inherited it. Independent
/// nodes run concurrently as child tasks; their results, the controls and the answers come back through
/// the run's signal queue, so the scheduler is only ever touched by this loop.
struct RunExecution {
    let context: ServiceContext
    let executor: NodeExecutor
    let store: WorkflowRunStore
    let handle: RunHandle
    let request: Envelope<WorkflowRunRequested>

    /// True when the run has an outcome (now or before): its request may be committed.
    func execute() async -> Bool {
        let runID = request.payload.runId
        var logger = context.logger
        logger[metadataKey: "workflow.run_id"] = "\(runID)"
        do {
            guard let loop = try await RunLoop.prepare(self, logger: logger) else { return true }
            return try await loop.run()
        } catch is CancellationError {
            return false
        } catch {
            logger.error(
                "run abandoned after an error; it resumes when its partition is reassigned",
                metadata: ["error": "\(error)"])
            return false
        }
    }
}

private final class RunLoop {
    let execution: RunExecution
    let logger: Logger
    let emitter: Emitter
    var record: WorkflowRunRecord
    var scheduler: WorkflowScheduler
    var startedAt: [String: Int64] = [:]
    /// human_input nodes waiting for their answer: a pause does not wait for them.
    var waitingInput: Set<String> = []
    var pendingPauses: [WorkflowControlRequested] = []

    var runID: String { record.runId }
    var store: WorkflowRunStore { execution.store }

    private init(execution: RunExecution, logger: Logger, record: WorkflowRunRecord, scheduler: WorkflowScheduler) {
        self.execution = execution
        self.logger = logger
        self.emitter = Emitter(context: execution.context, runID: record.runId)
        self.record = record
        self.scheduler = scheduler
    }

    /// Loads (or creates) the run's record and checkpoint; nil when the run already has an outcome.
    static func prepare(_ execution: RunExecution, logger: Logger) async throws -> RunLoop? {
        let payload = execution.request.payload
        let store = execution.store
        var record = try await retrying(logger) { try await store.record(payload.runId) }
        if record == nil {
            let now = Clock.epochMilliseconds()
            let created = WorkflowRunRecord(
                runId: payload.runId, userId: payload.userId, sessionId: payload.sessionId, status: .queued,
                workflow: payload.workflow, inputs: payload.inputs, createdAt: now, updatedAt: now)
            _ = try await retrying(logger) { try await store.create(created) }
            record = created
        }
        guard let record, !record.status.isTerminal else {
            if let record { try? await store.release(runID: record.runId, userID: record.userId) }
            return nil
        }
        switch WorkflowValidator.validate(record.workflow) {
        case .success(let workflow):
            let checkpoints = try await retrying(logger) { try await store.checkpoints(payload.runId) }
            let resumed = !checkpoints.isEmpty
            let loop = RunLoop(
                execution: execution, logger: logger, record: record,
                scheduler: WorkflowScheduler(workflow: workflow, checkpoint: checkpoints.mapValues(\.record)))
            if record.status == .paused { loop.scheduler.pause() }
            if try await loop.refused() { return nil }
            if resumed {
                logger.info(
                    "resuming run from its checkpoint",
                    metadata: ["workflow.checkpointed_nodes": "\(checkpoints.count)"])
            }
            return loop
        case .failure(let issues):
            // The gateway validates; a request from elsewhere may not be.
            let loop = RunLoop(
                execution: execution, logger: logger, record: record,
                scheduler: WorkflowScheduler(workflow: try WorkflowValidator.validate(minimalWorkflow).get()))
            try await loop.finish(.failed(node: "", error: issues.issues.map(\.message).joined(separator: "; ")))
            return nil
        }
    }

    /// A run taken over too often fails instead of crash-looping every runner in turn; a run over its
    /// user's limit of runs at once fails at its start. True when the run was failed for either.
    func refused() async throws -> Bool {
        let settings = execution.executor.settings
        let executions = try await retrying(logger) { [store, runID] in try await store.countExecution(runID) }
        if executions - 1 > settings.maximumTakeovers {
            logger.error("run taken over too often; failing it", metadata: ["workflow.executions": "\(executions)"])
            try await finish(
                .failed(
                    node: "",
                    error:
                        "the run was taken over \(executions - 1) times (its runners kept stopping); it failed rather than being resumed again (SWITCHBOARD_WORKFLOW_MAX_TAKEOVERS is \(settings.maximumTakeovers))"
                ))
            return true
        }
        let admitted = try await retrying(logger) { [store, runID, record] in
            try await store.admit(runID: runID, userID: record.userId, limit: settings.maximumRunsPerUser)
        }
        guard admitted else {
            try await finish(
                .failed(
                    node: "",
                    error:
                        "too many runs at once: at most \(settings.maximumRunsPerUser) per user (SWITCHBOARD_WORKFLOW_MAX_RUNS_PER_USER); this run was not started"
                ))
            return true
        }
        return false
    }

    private static let minimalWorkflow = WorkflowDefinition(
        nodes: [WorkflowNode(id: "start", type: "start"), WorkflowNode(id: "end", type: "end")],
        connections: [WorkflowConnection("start", "value", "end", "value")])

    func run() async throws -> Bool {
        logger.info("run started", metadata: ["workflow.status": "\(record.status.rawValue)"])
        if record.status != .paused { try await setStatus(.running) }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            if try await perform(scheduler.start(), group: &group) { return true }
            for await signal in execution.handle.signals {
                switch signal {
                case .abandon:
                    group.cancelAll()
                    return false
                case .nodeFinished(let node, let result, let started):
                    if try await nodeFinished(node, result, started: started, group: &group) { return true }
                case .control(let control):
                    if try await apply(control, group: &group) { return true }
                case .answer(let answer):
                    try await apply(answer)
                }
                try await settlePause()
            }
            group.cancelAll()
            return false
        }
    }

    private func nodeFinished(
        _ node: String, _ result: Result<NodeResult, NodeFailure>, started: Int64,
        group: inout ThrowingTaskGroup<Void, any Error>
    ) async throws -> Bool {
        guard scheduler.status(of: node) == .running, !scheduler.isFinished else { return false }
        waitingInput.remove(node)
        let finished = Clock.epochMilliseconds()
        let began = startedAt[node] ?? started
        switch result {
        case .success(let result):
            // The checkpoint comes first: only then does the node count as done.
            try await retrying(logger) { [store, runID] in
                try await store.checkpoint(
                    runID, node: node,
                    NodeCheckpoint(
                        status: .completed, outputs: result.outputs, ports: result.ports.map { $0.sorted() },
                        startedAt: began, finishedAt: finished))
            }
            try await emitNode(node, .completed, outputs: result.outputs, startedAt: began, finishedAt: finished)
            WorkflowRunnerMetrics.nodes[.completed]?.increment()
            return try await perform(scheduler.nodeCompleted(node, result), group: &group)
        case .failure(let failure):
            try await retrying(logger) { [store, runID] in
                try await store.checkpoint(
                    runID, node: node,
                    NodeCheckpoint(status: .failed, error: failure.message, startedAt: began, finishedAt: finished))
            }
            try await emitNode(node, .failed, error: failure.message, startedAt: began, finishedAt: finished)
            WorkflowRunnerMetrics.nodes[.failed]?.increment()
            return try await perform(scheduler.nodeFailed(node, error: failure.message), group: &group)
        }
    }

    /// Carries out the scheduler's actions; true once the run has its outcome.
    private func perform(_ actions: [WorkflowScheduler.Action], group: inout ThrowingTaskGroup<Void, any Error>)
        async throws -> Bool
    {
        for action in actions {
            switch action {
            case .start(let node, let inputs):
                let now = Clock.epochMilliseconds()
                startedAt[node] = now
                // Emitting costs no wait now, and a "running" seen before its checkpoint is harmless: a
                // runner that takes the run over starts the node again with the same event id.
                try await emitNode(node, .running, inputs: inputs, startedAt: now, finishedAt: nil)
                try await retrying(logger) { [store, runID] in
                    try await store.checkpoint(runID, node: node, NodeCheckpoint(status: .running, startedAt: now))
                }
                let definition = scheduler.workflow.nodes[node]!
                let kind = scheduler.workflow.kind(of: node)
                if kind == .humanInput { waitingInput.insert(node) }
                let run = NodeRun(
                    runID: runID, userID: record.userId, runInputs: record.inputs, handle: execution.handle,
                    emitter: emitter)
                let executor = execution.executor
                let handle = execution.handle
                group.addTask {
                    let result: Result<NodeResult, NodeFailure>
                    do {
                        result = .success(
                            try await NodeSpan.run(definition, runID: run.runID) {
                                try await executor.execute(definition, kind: kind, inputs: inputs, run: run)
                            })
                    } catch let failure as NodeFailure {
                        result = .failure(failure)
                    } catch is CancellationError {
                        return
                    } catch {
                        result = .failure(NodeFailure(message: "\(error)"))
                    }
                    handle.send(.nodeFinished(node: node, result: result, startedAt: now))
                }
            case .skipped(let node):
                try await emitNode(node, .skipped, startedAt: nil, finishedAt: nil)
                try await retrying(logger) { [store, runID] in
                    try await store.checkpoint(runID, node: node, NodeCheckpoint(status: .skipped))
                }
                WorkflowRunnerMetrics.nodes[.skipped]?.increment()
            case .finish(let outcome):
                group.cancelAll()
                try await finish(outcome)
                return true
            }
        }
        return false
    }

    func finish(_ outcome: WorkflowScheduler.Outcome) async throws {
        let now = Clock.epochMilliseconds()
        let timestamp = WorkflowTime.iso(now)
        let frame: any FramePayload
        switch outcome {
        case .completed(let results):
            record.status = .completed
            record.results = results
            frame = WorkflowCompleted(
                workflowId: runID, status: record.status.rawValue, results: results, summary: summary(now: now),
                timestamp: timestamp)
        case .failed(let node, let error):
            record.status = .failed
            record.error = error
            frame = WorkflowFailed(
                workflowId: runID, status: record.status.rawValue, error: error, nodeId: node.isEmpty ? nil : node,
                summary: summary(now: now), timestamp: timestamp)
        case .stopped:
            record.status = .stopped
            // The nodes still running were cancelled with the run.
            for node in scheduler.running {
                try await retrying(logger) { [store, runID] in
                    try await store.checkpoint(
                        runID, node: node,
                        NodeCheckpoint(
                            status: .failed, error: "stopped", startedAt: self.startedAt[node], finishedAt: now))
                }
                try await emitNode(node, .failed, error: "stopped", startedAt: startedAt[node], finishedAt: now)
            }
            frame = WorkflowStopped(
                workflowId: runID, status: record.status.rawValue, summary: summary(now: now), timestamp: timestamp)
        }
        record.updatedAt = now
        let final = record
        try await retrying(logger) { [store] in try await store.update(final) }
        try? await store.release(runID: runID, userID: record.userId)
        try await retrying(logger) { [emitter, runID] in
            try await emitter.emit(frame, id: DeterministicID.uuid(runID, "outcome"))
        }
        // The run's request is committed after this: every event of the run must be with the broker.
        try await emitter.settle()
        WorkflowRunnerMetrics.runs[record.status]?.increment()
        logger.info("run finished", metadata: ["workflow.status": "\(record.status.rawValue)"])
    }

    private func summary(now: Int64) -> WorkflowRunSummary {
        var counts: [NodeStatus: Int] = [:]
        for id in scheduler.workflow.order { counts[scheduler.status(of: id), default: 0] += 1 }
        return WorkflowRunSummary(
            totalNodes: scheduler.workflow.order.count, completed: counts[.completed] ?? 0,
            failed: counts[.failed] ?? 0, skipped: counts[.skipped] ?? 0,
            pending: (counts[.pending] ?? 0) + (counts[.running] ?? 0), elapsedMs: max(0, now - record.createdAt))
    }

    // MARK: Controls

    private func apply(_ control: WorkflowControlRequested, group: inout ThrowingTaskGroup<Void, any Error>)
        async throws -> Bool
    {
        switch WorkflowControlAction(rawValue: control.action) {
        case .pause:
            if scheduler.isPaused && pendingPauses.isEmpty {
                try await respond(control, success: true, status: "paused")
            } else {
                scheduler.pause()
                pendingPauses.append(control)
                try await setStatus(.paused)
            }
        case .resume:
            guard scheduler.isPaused else {
                try await respond(
                    control, success: false, status: record.status.rawValue,
                    error: .init(code: "not_paused", message: "the run is not paused"))
                return false
            }
            for pause in pendingPauses {
                try await respond(
                    pause, success: false, status: "running",
                    error: .init(code: "superseded", message: "resumed before the run paused"))
            }
            pendingPauses = []
            try await setStatus(.running)
            let actions = scheduler.resume()
            try await respond(control, success: true, status: "running")
            return try await perform(actions, group: &group)
        case .stop:
            for pause in pendingPauses {
                try await respond(
                    pause, success: false, status: "stopped",
                    error: .init(code: "superseded", message: "stopped before the run paused"))
            }
            pendingPauses = []
            let finished = try await perform(scheduler.stop(), group: &group)
            try await respond(control, success: true, status: "stopped")
            return finished
        case nil:
            try await respond(
                control, success: false, status: record.status.rawValue,
                error: .init(code: "invalid_action", message: "unknown action \(control.action)"))
        }
        return false
    }

    /// A pause is real once no node is running (those waiting for a user's answer aside).
    private func settlePause() async throws {
        guard scheduler.isPaused, !pendingPauses.isEmpty, scheduler.running.allSatisfy(waitingInput.contains) else {
            return
        }
        for pause in pendingPauses { try await respond(pause, success: true, status: "paused") }
        pendingPauses = []
    }

    private func apply(_ answer: WorkflowInputProvided) async throws {
        let node = answer.nodeId
        let waiting = scheduler.workflow.nodes[node]?.kind == .humanInput && scheduler.status(of: node) == .running
        var response = HumanInputResponse(
            workflowId: runID, nodeId: node, requestId: answer.requestId, success: waiting)
        if waiting {
            execution.handle.answers.deliver(answer.answer, to: node)
        } else {
            response.error = WorkflowRequestError(code: "not_waiting", message: "node \(node) is not waiting for input")
        }
        try await emitter.emit(response, id: DeterministicID.uuid(runID, "control", answer.requestId))
    }

    private func respond(
        _ control: WorkflowControlRequested, success: Bool, status: String, error: WorkflowRequestError? = nil
    ) async throws {
        let result = WorkflowControlResult(
            workflowId: runID, action: control.action, requestId: control.requestId, success: success, status: status,
            timestamp: WorkflowTime.iso(Clock.epochMilliseconds()),
            error: error)
        try await retrying(logger) { [emitter, runID] in
            try await emitter.emit(result, id: DeterministicID.uuid(runID, "control", control.requestId))
        }
    }

    private func setStatus(_ status: RunStatus) async throws {
        guard record.status != status else { return }
        record.status = status
        record.updatedAt = Clock.epochMilliseconds()
        let snapshot = record
        try await retrying(logger) { [store] in try await store.update(snapshot) }
    }

    private func emitNode(
        _ node: String, _ status: NodeStatus, inputs: [String: JSONValue]? = nil, outputs: [String: JSONValue]? = nil,
        error: String? = nil, startedAt: Int64?, finishedAt: Int64?
    ) async throws {
        let now = finishedAt ?? startedAt ?? Clock.epochMilliseconds()
        var elapsedMs: Int64?
        if let startedAt, let finishedAt { elapsedMs = max(0, finishedAt - startedAt) }
        let update = NodeStatusUpdate(
            workflowId: runID, nodeId: node, nodeType: scheduler.workflow.nodes[node]?.type ?? "",
            status: status.rawValue, timestamp: WorkflowTime.iso(now), inputs: inputs, outputs: outputs, error: error,
            elapsedMs: elapsedMs)
        try await retrying(logger) { [emitter, runID] in
            try await emitter.emit(update, id: DeterministicID.uuid(runID, node, status.rawValue))
        }
    }
}

/// Retries Redis and Kafka calls with backoff: a run waits out a short outage instead of failing.
func retrying<T>(_ logger: Logger, attempts: Int = 20, _ body: () async throws -> T) async throws -> T {
    var attempt = 0
    while true {
        do {
            return try await body()
        } catch {
            attempt += 1
            if attempt >= attempts || error is CancellationError { throw error }
            logger.warning(
                "retrying a run's storage or bus call", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
            try await Task.sleep(for: Backoff(initial: .milliseconds(50), maximum: .seconds(3)).delay(attempt: attempt))
        }
    }
}

/// A node's span, `node <type>`: a child of the run's (the `process` span of its request), and the
/// current span while the node executes, so an llm node's agent task continues its trace.
enum NodeSpan {
    static func run(_ node: WorkflowNode, runID: String, _ body: () async throws -> NodeResult) async throws
        -> NodeResult
    {
        try await Tracing.withSpan(
            "node \(node.type)",
            attributes: [
                ("switchboard.workflow.run_id", .string(runID)), ("switchboard.workflow.node.id", .string(node.id)),
                ("switchboard.workflow.node.type", .string(node.type)),
            ],
            outcome: { result in
                // Cancelled: the run was stopped, or handed over to another runner.
                let outcome: String
                switch result {
                case .success: outcome = NodeStatus.completed.rawValue
                case .failure(let error):
                    outcome = error is CancellationError ? "cancelled" : NodeStatus.failed.rawValue
                }
                return [("switchboard.workflow.node.outcome", .string(outcome))]
            }, body)
    }
}
