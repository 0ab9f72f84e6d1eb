import SwitchboardContracts

/// A node's state in a run.
public enum NodeStatus: String, Sendable, Codable, Equatable {
    case pending, running, completed, failed, skipped

    public var isTerminal: Bool { self == .completed || self == .failed || self == .skipped }
}

/// A run's state.
public enum RunStatus: String, Sendable, Codable, Equatable {
    case queued, running, paused, waitingInput = "waiting_input", completed, failed, stopped

    public var isTerminal: Bool { self == .completed || self == .failed || self == .stopped }
}

/// What a finished node produced. `ports` are the outputs that carry a value on (a condition emits only
/// the branch it took); nil: all of them.
public struct NodeResult: Sendable, Equatable, Codable {
    public var outputs: [String: JSONValue]
    public var ports: Set<String>?

    public init(outputs: [String: JSONValue], ports: Set<String>? = nil) {
        self.outputs = outputs
        self.ports = ports
    }

    /// The result of a node whose one output is its text (`template`, `llm`).
    public static func text(_ text: String) -> NodeResult {
        NodeResult(outputs: ["text": .string(text)])
    }
}

/// The checkpointed state of one node: what a resumed run starts from.
public struct NodeRecord: Sendable, Equatable, Codable {
    public var status: NodeStatus
    public var result: NodeResult?
    public var error: String?

    public init(status: NodeStatus, result: NodeResult? = nil, error: String? = nil) {
        self.status = status
        self.result = result
        self.error = error
    }
}

/// Decides which nodes of a run run next. A plain state machine: the runner tells it what happened and
/// carries out the actions it returns (start a node, announce a skipped one, finish the run).
///
/// A node becomes ready once every node feeding it is done. A node fed by a branch not taken (a
/// condition's other port, or a skipped node) is skipped, and so are the nodes behind it; merge and end
/// nodes run when at least one of their inputs arrived. A failed node fails the run. While paused, ready
/// nodes wait; the nodes already running finish.
public struct WorkflowScheduler: Sendable {
    public enum Action: Sendable, Equatable {
        case start(node: String, inputs: [String: JSONValue])
        case skipped(node: String)
        case finish(Outcome)
    }

    public enum Outcome: Sendable, Equatable {
        /// The end nodes' inputs, by end node.
        case completed(results: [String: JSONValue])
        case failed(node: String, error: String)
        case stopped
    }

    public let workflow: ValidatedWorkflow
    public private(set) var records: [String: NodeRecord]
    public private(set) var isPaused = false
    public private(set) var outcome: Outcome?
    /// Ready nodes held back by a pause, in order.
    private var held: [String] = []

    /// A new run, or one resumed from its checkpoint: completed and skipped nodes are kept, a node that was
    /// running when its runner died runs again (it never counted as done).
    public init(workflow: ValidatedWorkflow, checkpoint: [String: NodeRecord] = [:]) {
        self.workflow = workflow
        var records: [String: NodeRecord] = [:]
        for id in workflow.order {
            if let record = checkpoint[id], record.status == .completed || record.status == .skipped {
                records[id] = record
            } else {
                records[id] = NodeRecord(status: .pending)
            }
        }
        self.records = records
    }

    public func status(of node: String) -> NodeStatus { records[node]?.status ?? .pending }
    public var running: [String] { workflow.order.filter { records[$0]?.status == .running } }
    public var isFinished: Bool { outcome != nil }

    /// Starts (or resumes) the run: the nodes ready now, and the skips already decided.
    public mutating func start() -> [Action] {
        advance()
    }

    public mutating func nodeCompleted(_ node: String, _ result: NodeResult) -> [Action] {
        guard outcome == nil, records[node]?.status == .running else { return [] }
        records[node] = NodeRecord(status: .completed, result: result)
        return advance()
    }

    public mutating func nodeFailed(_ node: String, error: String) -> [Action] {
        guard outcome == nil, records[node]?.status == .running else { return [] }
        records[node] = NodeRecord(status: .failed, error: error)
        let outcome = Outcome.failed(node: node, error: error)
        self.outcome = outcome
        return [.finish(outcome)]
    }

    public mutating func pause() {
        guard outcome == nil else { return }
        isPaused = true
    }

    public mutating func resume() -> [Action] {
        guard outcome == nil, isPaused else { return [] }
        isPaused = false
        return advance()
    }

    /// Stops the run; the nodes still running are to be cancelled by the runner.
    public mutating func stop() -> [Action] {
        guard outcome == nil else { return [] }
        outcome = .stopped
        return [.finish(.stopped)]
    }

    /// The values arriving at a node's inputs (from completed nodes through ports they emitted).
    public func inputs(of node: String) -> [String: JSONValue] {
        var inputs: [String: JSONValue] = [:]
        for connection in workflow.incoming[node] ?? [] where carries(connection) {
            inputs[connection.toInput] = records[connection.fromNode]?.result?.outputs[connection.fromOutput] ?? .null
        }
        return inputs
    }

    private func carries(_ connection: WorkflowConnection) -> Bool {
        guard let record = records[connection.fromNode], record.status == .completed else { return false }
        return record.result?.ports.map { $0.contains(connection.fromOutput) } ?? true
    }

    private mutating func advance() -> [Action] {
        guard outcome == nil else { return [] }
        var actions: [Action] = []
        // Decide in topological order, so a skip propagates through the whole branch in one pass.
        for id in workflow.order where records[id]?.status == .pending && !held.contains(id) {
            let incoming = workflow.incoming[id] ?? []
            guard incoming.allSatisfy({ records[$0.fromNode]?.status.isTerminal == true }) else { continue }
            let arrived = incoming.filter(carries).count
            let runs =
                workflow.kind(of: id).joinsBranches ? (arrived > 0 || incoming.isEmpty) : arrived == incoming.count
            if runs {
                held.append(id)
            } else {
                records[id] = NodeRecord(status: .skipped)
                actions.append(.skipped(node: id))
            }
        }
        if !isPaused {
            for id in held {
                records[id] = NodeRecord(status: .running)
                actions.append(.start(node: id, inputs: inputs(of: id)))
            }
            held = []
        }
        if held.isEmpty, workflow.order.allSatisfy({ records[$0]?.status.isTerminal == true }) {
            var results: [String: JSONValue] = [:]
            for id in workflow.order where workflow.kind(of: id) == .end && records[id]?.status == .completed {
                results[id] = .object(records[id]?.result?.outputs ?? [:])
            }
            let outcome = Outcome.completed(results: results)
            self.outcome = outcome
            actions.append(.finish(outcome))
        }
        return actions
    }
}
