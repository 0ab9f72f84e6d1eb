import Foundation
import PostgresNIO

/// A workflow run as PostgreSQL keeps it: the indexed columns, and the whole record as JSON (its
/// shape belongs to SwitchboardWorkflow, which encodes and decodes it).
public struct ArchivedRun: Sendable, Equatable {
    public var runId: String
    public var userId: String
    public var sessionId: String
    public var status: String
    public var recordJSON: String
    /// Epoch milliseconds.
    public var createdAt: Int64
    public var updatedAt: Int64

    public init(
        runId: String, userId: String, sessionId: String, status: String, recordJSON: String, createdAt: Int64,
        updatedAt: Int64
    ) {
        self.runId = runId
        self.userId = userId
        self.sessionId = sessionId
        self.status = status
        self.recordJSON = recordJSON
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// Workflow runs for history (docs/workflows.md): the run record, each node's checkpoint and the
/// per-user list. Redis keeps what running runs need; this outlives it.
extension HistoryStore {
    /// Writes the run, unless a newer state of it is stored already (a late retry never rolls a run
    /// back; an equal time still writes, so a status change within one millisecond is kept).
    public func saveRun(_ run: ArchivedRun) async throws {
        try await client.query(
            """
            INSERT INTO workflow_runs (run_id, user_id, session_id, status, record, created_at, updated_at)
            VALUES (\(run.runId), \(run.userId), \(run.sessionId), \(run.status), \(run.recordJSON)::jsonb, \(run.createdAt), \(run.updatedAt))
            ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status, record = EXCLUDED.record, updated_at = EXCLUDED.updated_at
            WHERE workflow_runs.updated_at <= EXCLUDED.updated_at
            """, logger: logger)
    }

    public func archivedRun(_ runId: String) async throws -> ArchivedRun? {
        let rows = try await client.query(
            """
            SELECT run_id, user_id, session_id, status, record::text, created_at, updated_at
            FROM workflow_runs WHERE run_id = \(runId)
            """, logger: logger
        ).collect()
        guard let row = rows.first else { return nil }
        let (id, user, session, status, record, created, updated) = try row.decode(
            (String, String, String, String, String, Int64, Int64).self)
        return ArchivedRun(
            runId: id, userId: user, sessionId: session, status: status, recordJSON: record, createdAt: created,
            updatedAt: updated)
    }

    /// A node's checkpoint (JSON), replaced by later ones of the same node.
    public func saveNodeCheckpoint(
        runId: String, nodeId: String, status: String, checkpointJSON: String, at time: Int64
    ) async throws {
        try await client.query(
            """
            INSERT INTO workflow_nodes (run_id, node_id, status, checkpoint, updated_at)
            VALUES (\(runId), \(nodeId), \(status), \(checkpointJSON)::jsonb, \(time))
            ON CONFLICT (run_id, node_id) DO UPDATE SET status = EXCLUDED.status, checkpoint = EXCLUDED.checkpoint,
                   updated_at = EXCLUDED.updated_at
            WHERE workflow_nodes.updated_at <= EXCLUDED.updated_at
            """, logger: logger)
    }

    /// The run's node checkpoints as JSON, by node id.
    public func nodeCheckpoints(runId: String) async throws -> [String: String] {
        var result: [String: String] = [:]
        for try await (node, json) in try await client.query(
            "SELECT node_id, checkpoint::text FROM workflow_nodes WHERE run_id = \(runId)", logger: logger
        ).decode((String, String).self) {
            result[node] = json
        }
        return result
    }

    /// A user's run ids, newest first: `limit` after the `offset` newest, and how many there are.
    public func archivedRuns(ofUser userId: String, offset: Int, limit: Int) async throws -> (ids: [String], total: Int)
    {
        guard offset >= 0, (1...SessionQuery.maximumLimit).contains(limit) else {
            throw StoreError(.invalidArgument, "limit must be 1…\(SessionQuery.maximumLimit) and offset ≥ 0")
        }
        var ids: [String] = []
        for try await id in try await client.query(
            """
            SELECT run_id FROM workflow_runs WHERE user_id = \(userId)
            ORDER BY created_at DESC, run_id DESC OFFSET \(offset) LIMIT \(limit)
            """, logger: logger
        ).decode(String.self) {
            ids.append(id)
        }
        let total =
            try await client.query("SELECT count(*)::int8 FROM workflow_runs WHERE user_id = \(userId)", logger: logger)
            .collect().first?.decode(Int64.self) ?? 0
        return (ids, Int(total))
    }
}
