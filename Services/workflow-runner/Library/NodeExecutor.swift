import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardWorkflow

/// What a node needs to know of its run.
struct NodeRun: Sendable {
    let runID: String
    let userID: String
    let runInputs: [String: JSONValue]
    let handle: RunHandle
    let emitter: Emitter
}

/// Executes one node of each type. Pure types go through `NodeLogic`; llm nodes through the
/// agent-workers, http nodes through AsyncHTTPClient, human_input nodes wait for the user's answer.
struct NodeExecutor: Sendable {
    /// Between attempts of an http node.
    static let retryBackoff = Backoff(initial: .milliseconds(100), maximum: .milliseconds(6400))
    let context: ServiceContext
    let settings: WorkflowRunnerSettings

    /// Runs the node; outputs over the limit fail it (they would be checkpointed and sent to clients).
    func execute(_ node: WorkflowNode, kind: NodeKind, inputs: [String: JSONValue], run: NodeRun) async throws
        -> NodeResult
    {
        let result = try await perform(node, kind: kind, inputs: inputs, run: run)
        do {
            try OutputLimits.check(outputs: result.outputs, limit: settings.maximumOutputBytes)
        } catch let error as OutputLimitError {
            throw NodeFailure(message: error.description)
        }
        return result
    }

    private func perform(_ node: WorkflowNode, kind: NodeKind, inputs: [String: JSONValue], run: NodeRun) async throws
        -> NodeResult
    {
        switch kind {
        case .start:
            var outputs = node.config["inputs"]?.objectValue ?? [:]
            outputs.merge(run.runInputs) { _, given in given }
            return NodeResult(outputs: outputs)
        case .template:
            return .text(try render(node.config["template"], inputs))
        case .condition:
            let branch = NodeLogic.conditionBranch(config: node.config, value: inputs["value"])
            return NodeResult(outputs: [branch: inputs["value"] ?? .null], ports: [branch])
        case .delay:
            try await Task.sleep(for: .milliseconds(node.config["ms"]?.intValue ?? 0))
            return NodeResult(outputs: ["value": inputs["value"] ?? .null])
        case .merge:
            return NodeResult(outputs: NodeLogic.merge(inputs))
        case .end:
            return NodeResult(outputs: inputs)
        case .humanInput:
            let prompt = try render(node.config["prompt"] ?? "", inputs)
            try await run.emitter.emit(
                HumanInputRequired(workflowId: run.runID, nodeId: node.id, prompt: prompt),
                id: DeterministicID.uuid(run.runID, node.id, "input_required"))
            return NodeResult(outputs: ["answer": try await run.handle.answers.receive(node.id)])
        case .llm:
            return .text(try await llm(node, inputs: inputs, run: run))
        case .http:
            return try await request(node, inputs: inputs)
        }
    }

    private func render(_ template: JSONValue?, _ inputs: [String: JSONValue]) throws -> String {
        do {
            return try OutputLimits.render(
                template?.stringValue ?? "", with: inputs, limit: settings.maximumOutputBytes)
        } catch let error as OutputLimitError {
            throw NodeFailure(message: "template error: \(error.description)")
        } catch {
            throw NodeFailure(message: "template error: \(error)")
        }
    }

    /// Asks an agent-worker and waits for its result, which comes back on this run's partition of
    /// `Topics.workflowCommands` (the task's `replyTo`; its conversation is the run, the partition key),
    /// so it reaches whichever runner owns the run. The task id is the same on every attempt: after a
    /// takeover, the new owner reads the partition again from the run's request, the result of a task
    /// already done included, and an agent-worker asked again answers nothing twice (TaskJournal).
    private func llm(_ node: WorkflowNode, inputs: [String: JSONValue], run: NodeRun) async throws -> String {
        let taskID = "wf-\(run.runID)-\(node.id)"
        if let done = run.handle.agentResults.take(taskID) { return try answer(done) }
        let prompt = try render(node.config["prompt"], inputs)
        let task = AgentTaskRequested(
            taskId: taskID, conversationId: run.runID, userId: run.userID, replyMessageId: taskID, inReplyTo: run.runID,
            role: node.config["role"]?.stringValue ?? "assistant", prompt: prompt,
            runId: WorkflowNodeTask.runPrefix + run.runID,
            responsibility: node.config["responsibility"]?.stringValue,
            systemPrompt: node.config["system"]?.stringValue,
            isFinal: false, dispatchedAt: Clock.epochMilliseconds(),
            workflowNode: WorkflowNodeTask(runId: run.runID, nodeId: node.id),
            replyTo: Topics.workflowCommands.name)
        try await context.publish(context.envelope(task, routingKey: task.conversationId), to: Topics.agentTasks)
        do {
            return try answer(
                try await Self.within(settings.llmTimeout) { try await run.handle.agentResults.receive(taskID) })
        } catch is TimedOut {
            throw NodeFailure(message: "no answer from the agent-worker within \(settings.llmTimeout)")
        }
    }

    private func answer(_ result: AgentTaskCompleted) throws -> String {
        guard result.status == AgentTaskCompleted.completed else {
            throw NodeFailure(message: "the agent failed: \(result.error ?? result.status)")
        }
        return result.content
    }

    /// An HTTP request under the egress rules (Egress.swift), with a timeout per attempt (at most the
    /// operator's) and retries (with backoff) on transport errors and 5xx; a refusal is not retried.
    private func request(_ node: WorkflowNode, inputs: [String: JSONValue]) async throws -> NodeResult {
        let url = try render(node.config["url"], inputs)
        let method = node.config["method"]?.stringValue ?? "GET"
        let timeout = min(
            node.config["timeout_ms"]?.intValue.map { Duration.milliseconds($0) } ?? settings.httpTimeout,
            settings.httpTimeout)
        let retries = node.config["retries"]?.intValue ?? settings.httpRetries
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in node.config["headers"]?.objectValue ?? [:] {
            request.headers.add(name: name, value: try render(value, inputs))
        }
        switch node.config["body"] {
        case .string(let template)?:
            request.body = .bytes(ByteBuffer(string: try render(.string(template), inputs)))
        case let body? where body != .null:
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
            if !request.headers.contains(name: "content-type") {
                request.headers.add(name: "content-type", value: "application/json")
            }
        default:
            break
        }
        var lastError = "no attempt"
        for attempt in 0...retries {
            if attempt > 0 { try await Task.sleep(for: Self.retryBackoff.delay(attempt: attempt)) }
            do {
                let egress = self.egress
                let answer = try await Self.within(timeout) { [request] in
                    try await egress.execute(request, deadline: .now() + .nanoseconds(Int64(timeout / .nanoseconds(1))))
                }
                let bytes = answer.body
                let status = answer.status
                if status >= 500 {
                    lastError = "HTTP \(status)"
                    continue
                }
                let data = Data(bytes.readableBytesView)
                let body =
                    (try? JSONDecoder().decode(JSONValue.self, from: data))
                    ?? .string(String(decoding: data, as: UTF8.self))
                if status >= 400 { throw NodeFailure(message: "HTTP \(status) from \(url)") }
                return NodeResult(outputs: ["status": .number(Double(status)), "body": body])
            } catch let failure as NodeFailure {
                throw failure
            } catch let refusal as EgressError {
                throw NodeFailure(message: refusal.description)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                lastError = "\(error)"
            }
        }
        throw NodeFailure(message: "\(method) \(url) failed after \(retries + 1) attempts: \(lastError)")
    }

    var egress: EgressClient {
        EgressClient(
            policy: settings.egress, maximumRedirects: settings.httpMaximumRedirects,
            maximumResponseBytes: settings.httpMaximumResponseBytes)
    }

    struct TimedOut: Error, CustomStringConvertible {
        var limit: Duration
        var description: String { "no complete answer within \(limit)" }
    }

    /// The whole exchange, body included, within `limit` (the client's deadline covers less).
    static func within<T: Sendable>(_ limit: Duration, _ body: @escaping @Sendable () async throws -> T) async throws
        -> T
    {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: limit)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw TimedOut(limit: limit) }
            return value
        }
    }
}
