import Foundation
import SwitchboardContracts
import SwitchboardWorkflow

// The bodies of the workflow REST routes (`/api/v1/workflows/runs…`, docs/workflows.md), snake_case
// like the rest of seed 003. An optional field left nil is not sent.

/// A run as `GET /api/v1/workflows/runs/{id}` shows it, and (without `workflow` and `nodes`) each item
/// of the run list.
struct WorkflowRunBody: Encodable, Equatable {
    /// One node's checkpoint.
    struct Node: Encodable, Equatable {
        var status: String
        var outputs: [String: JSONValue]?
        var error: String?
        /// Set once the node has both started and finished.
        var elapsedMs: Int64?

        init(_ checkpoint: NodeCheckpoint) {
            status = checkpoint.status.rawValue
            outputs = checkpoint.outputs
            error = checkpoint.error
            if let started = checkpoint.startedAt, let finished = checkpoint.finishedAt {
                elapsedMs = finished - started
            }
        }

        enum CodingKeys: String, CodingKey {
            case status, outputs, error, elapsedMs = "elapsed_ms"
        }
    }

    /// The client's workflow id; the run id for a workflow sent without one.
    var workflowId: String
    var runId: String
    var status: String
    var sessionId: String
    /// ISO 8601 (`WorkflowTime.iso`).
    var createdAt: String
    var updatedAt: String
    var nodeCount: Int
    var error: String?
    var results: [String: JSONValue]?
    var workflow: WorkflowDefinition?
    /// Each node's checkpoint by node id.
    var nodes: [String: Node]?

    init(_ record: WorkflowRunRecord, checkpoints: [String: NodeCheckpoint]? = nil) {
        workflowId = record.workflow.id ?? record.runId
        runId = record.runId
        status = record.status.rawValue
        sessionId = record.sessionId
        createdAt = WorkflowTime.iso(record.createdAt)
        updatedAt = WorkflowTime.iso(record.updatedAt)
        nodeCount = record.workflow.nodes.count
        error = record.error
        results = record.results
        if let checkpoints {
            workflow = record.workflow
            nodes = checkpoints.mapValues(Node.init)
        }
    }

    enum CodingKeys: String, CodingKey {
        case workflowId = "workflow_id", runId = "run_id", status, sessionId = "session_id",
            createdAt = "created_at", updatedAt = "updated_at", nodeCount = "node_count", error, results, workflow,
            nodes
    }
}

/// `GET /api/v1/workflows/runs`: a page of the user's runs, newest first.
struct WorkflowRunPage: Encodable, Equatable {
    var runs: [WorkflowRunBody]
    var total: Int
    var offset: Int
    var limit: Int
    var hasMore: Bool

    enum CodingKeys: String, CodingKey {
        case runs, total, offset, limit, hasMore = "has_more"
    }
}

/// `POST /api/v1/workflows/runs/{id}/input`: the answer is on its way to the node.
struct WorkflowInputSubmitted: Encodable, Equatable {
    var workflowId: String
    var runId: String
    var requestId: String
    /// Always "submitted".
    var status = "submitted"

    enum CodingKeys: String, CodingKey {
        case workflowId = "workflow_id", runId = "run_id", requestId = "request_id", status
    }
}
