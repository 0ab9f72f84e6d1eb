import Foundation

/// Frame types of the workflow protocol (seed 003), and the extra ones Switchboard adds.
public enum WorkflowFrame {
    public static let connectionEstablished = "connection_established"
    public static let executionStarted = "workflow_execution_started"
    public static let validationError = "workflow_validation_error"
    public static let nodeStatus = "node_status_update"
    /// A running node's partial output (an llm node's tokens).
    public static let nodeProgress = WorkflowNodeTask.progressFrame
    /// A human_input node waits for `provide_input`.
    public static let inputRequired = "human_input_required"
    public static let completed = "workflow_completed"
    public static let failed = "workflow_failed"
    public static let stopped = "workflow_stopped"
    /// The seed's answer to `control_workflow`, sent at once: `status: "acknowledged"`.
    public static let controlResponse = "workflow_control_response"
    /// What a control did, once the runner applied it (`success`, the run's `status`, `error`).
    public static let controlResult = "workflow_control_result"
    /// The seed's frame for an `execute_workflow` that failed before its run started.
    public static let executionError = "workflow_execution_error"
    public static let inputResponse = "human_input_response"
    public static let subscriptionConfirmed = "subscription_confirmed"
    public static let subscriptionUpdated = "subscription_updated"
    public static let heartbeat = "heartbeat"
    public static let error = "error"

    /// What `subscribe` / `unsubscribe` name in `event_types`: a group, or one frame type.
    public static let eventGroups: [String: Set<String>] = [
        "node_status": [nodeStatus, nodeProgress, inputRequired],
        "workflow_status": [executionStarted, completed, failed, stopped, controlResponse, controlResult],
    ]
    public static let subscribable: Set<String> = [
        nodeStatus, nodeProgress, inputRequired, executionStarted, completed, failed, stopped, controlResponse,
        controlResult, inputResponse,
    ]
    /// A run's own ends and the answers to the client's requests: no subscription hides them.
    public static let alwaysDelivered: Set<String> = [
        executionStarted, completed, failed, stopped, controlResponse, controlResult, inputResponse,
    ]
}

// The workflow-runner's frames on a run's channel (`Channel.workflow(runId)`). Field names are seed
// 003's, snake_case on the wire; an optional field left nil is not sent. The gateway's BlueV socket
// passes them on flattened, naming the run by the client's workflow id.

/// Why a control or an answer was refused: `{code, message}`.
public struct WorkflowRequestError: Codable, Sendable, Equatable {
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }
}

/// node_status_update: a node started, finished, failed or was skipped.
public struct NodeStatusUpdate: FramePayload, Equatable {
    public static let frameType = WorkflowFrame.nodeStatus
    public var workflowId: String
    public var nodeId: String
    public var nodeType: String
    public var status: String
    public var timestamp: String
    /// `running`: what the node was given.
    public var inputs: [String: JSONValue]?
    /// `completed`: what the node produced.
    public var outputs: [String: JSONValue]?
    public var error: String?
    /// Known once the node finished.
    public var elapsedMs: Int64?

    public init(
        workflowId: String, nodeId: String, nodeType: String, status: String, timestamp: String,
        inputs: [String: JSONValue]? = nil, outputs: [String: JSONValue]? = nil, error: String? = nil,
        elapsedMs: Int64? = nil
    ) {
        self.workflowId = workflowId
        self.nodeId = nodeId
        self.nodeType = nodeType
        self.status = status
        self.timestamp = timestamp
        self.inputs = inputs
        self.outputs = outputs
        self.error = error
        self.elapsedMs = elapsedMs
    }

    enum CodingKeys: String, CodingKey {
        case workflowId = "workflow_id", nodeId = "node_id", nodeType = "node_type", status, timestamp, inputs,
            outputs, error, elapsedMs = "elapsed_ms"
    }
}

/// human_input_required: a human_input node waits for `provide_input`.
public struct HumanInputRequired: FramePayload, Equatable {
    public static let frameType = WorkflowFrame.inputRequired
    public var workflowId: String
    public var nodeId: String
    public var prompt: String

    public init(workflowId: String, nodeId: String, prompt: String) {
        self.workflowId = workflowId
        self.nodeId = nodeId
        self.prompt = prompt
    }

    enum CodingKeys: String, CodingKey {
        case workflowId = "workflow_id", nodeId = "node_id", prompt
    }
}

/// human_input_response: whether an answer reached its node. The run's runner names the node; a
/// runner that does not run the run answers like a control instead (`action: provide_input`, the
/// run's `status`).
public struct HumanInputResponse: FramePayload, Equatable {
    public static let frameType = WorkflowFrame.inputResponse
    public var workflowId: String
    public var nodeId: String?
    public var action: String?
    public var requestId: String
    public var success: Bool
    public var status: String?
    public var error: WorkflowRequestError?

    public init(
        workflowId: String, nodeId: String? = nil, action: String? = nil, requestId: String, success: Bool,
        status: String? = nil, error: WorkflowRequestError? = nil
    ) {
        self.workflowId = workflowId
        self.nodeId = nodeId
        self.action = action
        self.requestId = requestId
        self.success = success
        self.status = status
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case workflowId = "workflow_id", nodeId = "node_id", action, requestId = "request_id", success, status,
            error
    }
}

/// workflow_control_result: what a pause, resume or stop did, once applied (the run's runner stamps it
/// with a `timestamp`; a runner that does not run the run answers without one).
public struct WorkflowControlResult: FramePayload, Equatable {
    public static let frameType = WorkflowFrame.controlResult
    public var workflowId: String
    public var action: String
    public var requestId: String
    public var success: Bool
    /// The run's status after the control.
    public var status: String
    public var timestamp: String?
    public var error: WorkflowRequestError?

    public init(
        workflowId: String, action: String, requestId: String, success: Bool, status: String,
        timestamp: String? = nil, error: WorkflowRequestError? = nil
    ) {
        self.workflowId = workflowId
        self.action = action
        self.requestId = requestId
        self.success = success
        self.status = status
        self.timestamp = timestamp
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case workflowId = "workflow_id", action, requestId = "request_id", success, status, timestamp, error
    }
}

/// A finished run's node counts, in each of its outcome frames. Nodes still running count as pending.
public struct WorkflowRunSummary: Codable, Sendable, Equatable {
    public var totalNodes: Int
    public var completed: Int
    public var failed: Int
    public var skipped: Int
    public var pending: Int
    public var elapsedMs: Int64

    public init(totalNodes: Int, completed: Int, failed: Int, skipped: Int, pending: Int, elapsedMs: Int64) {
        self.totalNodes = totalNodes
        self.completed = completed
        self.failed = failed
        self.skipped = skipped
        self.pending = pending
        self.elapsedMs = elapsedMs
    }

    enum CodingKeys: String, CodingKey {
        case totalNodes = "total_nodes", completed, failed, skipped, pending, elapsedMs = "elapsed_ms"
    }
}

/// workflow_completed: the run's results, by end node.
public struct WorkflowCompleted: FramePayload, Equatable {
    public static let frameType = WorkflowFrame.completed
    public var workflowId: String
    public var status: String
    public var results: [String: JSONValue]
    public var summary: WorkflowRunSummary
    public var timestamp: String

    public init(
        workflowId: String, status: String, results: [String: JSONValue], summary: WorkflowRunSummary,
        timestamp: String
    ) {
        self.workflowId = workflowId
        self.status = status
        self.results = results
        self.summary = summary
        self.timestamp = timestamp
    }

    enum CodingKeys: String, CodingKey {
        case workflowId = "workflow_id", status, results, summary, timestamp
    }
}

/// workflow_failed: why, and the node that failed (none when the run failed before any node ran).
public struct WorkflowFailed: FramePayload, Equatable {
    public static let frameType = WorkflowFrame.failed
    public var workflowId: String
    public var status: String
    public var error: String
    public var nodeId: String?
    public var summary: WorkflowRunSummary
    public var timestamp: String

    public init(
        workflowId: String, status: String, error: String, nodeId: String? = nil, summary: WorkflowRunSummary,
        timestamp: String
    ) {
        self.workflowId = workflowId
        self.status = status
        self.error = error
        self.nodeId = nodeId
        self.summary = summary
        self.timestamp = timestamp
    }

    enum CodingKeys: String, CodingKey {
        case workflowId = "workflow_id", status, error, nodeId = "node_id", summary, timestamp
    }
}

/// workflow_stopped: the user stopped the run.
public struct WorkflowStopped: FramePayload, Equatable {
    public static let frameType = WorkflowFrame.stopped
    public var workflowId: String
    public var status: String
    public var summary: WorkflowRunSummary
    public var timestamp: String

    public init(workflowId: String, status: String, summary: WorkflowRunSummary, timestamp: String) {
        self.workflowId = workflowId
        self.status = status
        self.summary = summary
        self.timestamp = timestamp
    }

    enum CodingKeys: String, CodingKey {
        case workflowId = "workflow_id", status, summary, timestamp
    }
}
