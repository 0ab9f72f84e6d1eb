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
    let context: ServiceContext
    let store: WorkflowRunStore
    let http: HTTPClient
    let settings: WorkflowRunnerSettings

    func execute(_ node: WorkflowNode, kind: NodeKind, inputs: [String: JSONValue], run: NodeRun) async throws -> NodeResult {
        switch kind {
        case .start:
            var outputs = node.config["inputs"]?.objectValue ?? [:]
            outputs.merge(run.runInputs) { _, given in given }
            return NodeResult(outputs: outputs)
        case .template:
            return NodeResult(outputs: ["text": .string(try render(node.config["template"], inputs))])
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
                WorkflowFrame.inputRequired,
                ["workflow_id": .string(run.runID), "node_id": .string(node.id), "prompt": .string(prompt)],
                id: DeterministicID.uuid(run.runID, node.id, "input_required"))
            return NodeResult(outputs: ["answer": try await run.handle.answer(for: node.id)])
        case .llm:
            return NodeResult(outputs: ["text": .string(try await llm(node, inputs: inputs, run: run))])
        case .http:
            return try await request(node, inputs: inputs)
        }
    }

    private func render(_ template: JSONValue?, _ inputs: [String: JSONValue]) throws -> String {
        do {
            return try TemplateRenderer.render(template?.stringValue ?? "", with: inputs)
        } catch {
            throw NodeFailure(message: "template error: \(error)")
        }
    }

    /// Asks an agent-worker (the same task id on every attempt, so a runner that took the run over finds
    /// the answer of a task already done instead of asking again) and waits for its result in Redis.
    private func llm(_ node: WorkflowNode, inputs: [String: JSONValue], run: NodeRun) async throws -> String {
        let taskID = "wf-\(run.runID)-\(node.id)"
        if let done = try await store.agentResult(taskID: taskID) { return try answer(done) }
        let prompt = try render(node.config["prompt"], inputs)
        let task = AgentTaskRequested(
            taskId: taskID, conversationId: "wf-\(run.runID)", userId: run.userID, replyMessageId: taskID, inReplyTo: run.runID,
            role: node.config["role"]?.stringValue ?? "assistant", prompt: prompt, runId: WorkflowNodeTask.runPrefix + run.runID,
            responsibility: node.config["responsibility"]?.stringValue, systemPrompt: node.config["system"]?.stringValue,
            isFinal: false, dispatchedAt: Clock.epochMilliseconds(), workflowNode: WorkflowNodeTask(runId: run.runID, nodeId: node.id))
        try await context.publish(context.envelope(task, routingKey: task.conversationId), to: Topics.agentTasks)
        let deadline = ContinuousClock.now + settings.llmTimeout
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: settings.agentResultPoll)
            if let done = try await store.agentResult(taskID: taskID) { return try answer(done) }
        }
        throw NodeFailure(message: "no answer from the agent-worker within \(settings.llmTimeout)")
    }

    private func answer(_ json: String) throws -> String {
        guard let result = try? JSONDecoder().decode(AgentTaskCompleted.self, from: Data(json.utf8)) else {
            throw NodeFailure(message: "unreadable agent result")
        }
        guard result.status == AgentTaskCompleted.completed else {
            throw NodeFailure(message: "the agent failed: \(result.error ?? result.status)")
        }
        return result.content
    }

    /// An HTTP request with a timeout per attempt and retries (with backoff) on transport errors and 5xx.
    private func request(_ node: WorkflowNode, inputs: [String: JSONValue]) async throws -> NodeResult {
        let url = try render(node.config["url"], inputs)
        let method = node.config["method"]?.stringValue ?? "GET"
        let timeout = node.config["timeout_ms"]?.intValue.map { Duration.milliseconds($0) } ?? settings.httpTimeout
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
            if !request.headers.contains(name: "content-type") { request.headers.add(name: "content-type", value: "application/json") }
        default:
            break
        }
        var lastError = "no attempt"
        for attempt in 0...retries {
            if attempt > 0 { try await Task.sleep(for: .milliseconds(100 << min(attempt, 6))) }
            do {
                let response = try await http.execute(request, timeout: .nanoseconds(Int64(timeout / .nanoseconds(1))))
                let bytes = try await response.body.collect(upTo: 4 << 20)
                let status = Int(response.status.code)
                if status >= 500 {
                    lastError = "HTTP \(status)"
                    continue
                }
                let data = Data(bytes.readableBytesView)
                let body = (try? JSONDecoder().decode(JSONValue.self, from: data)) ?? .string(String(decoding: data, as: UTF8.self))
                if status >= 400 { throw NodeFailure(message: "HTTP \(status) from \(url)") }
                return NodeResult(outputs: ["status": .number(Double(status)), "body": body])
            } catch let failure as NodeFailure {
                throw failure
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                lastError = "\(error)"
            }
        }
        throw NodeFailure(message: "\(method) \(url) failed after \(retries + 1) attempts: \(lastError)")
    }
}
