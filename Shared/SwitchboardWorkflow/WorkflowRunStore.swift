import Foundation
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardStore

/// What is known of a run: its record and the checkpoint of each node.
public struct WorkflowRunRecord: Sendable, Equatable, Codable {
    public var runId: String
    public var userId: String
    public var sessionId: String
    public var status: RunStatus
    public var workflow: WorkflowDefinition
    public var inputs: [String: JSONValue]
    public var createdAt: Int64
    public var updatedAt: Int64
    public var error: String?
    public var results: [String: JSONValue]?

    public init(
        runId: String, userId: String, sessionId: String, status: RunStatus, workflow: WorkflowDefinition,
        inputs: [String: JSONValue], createdAt: Int64, updatedAt: Int64, error: String? = nil,
        results: [String: JSONValue]? = nil
    ) {
        self.runId = runId
        self.userId = userId
        self.sessionId = sessionId
        self.status = status
        self.workflow = workflow
        self.inputs = inputs
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.error = error
        self.results = results
    }
}

/// A node's checkpoint: written before the node counts as done, so a runner that takes the run over
/// starts from it.
public struct NodeCheckpoint: Sendable, Equatable, Codable {
    public var status: NodeStatus
    public var outputs: [String: JSONValue]?
    public var ports: [String]?
    public var error: String?
    public var startedAt: Int64?
    public var finishedAt: Int64?

    public init(
        status: NodeStatus, outputs: [String: JSONValue]? = nil, ports: [String]? = nil, error: String? = nil,
        startedAt: Int64? = nil, finishedAt: Int64? = nil
    ) {
        self.status = status
        self.outputs = outputs
        self.ports = ports
        self.error = error
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }

    public var record: NodeRecord {
        NodeRecord(
            status: status, result: outputs.map { NodeResult(outputs: $0, ports: ports.map(Set.init)) }, error: error)
    }
}

/// Runs in Redis: one hash per run, one hash of node checkpoints, a sorted set of each user's runs,
/// the set of runs of each WebSocket session. Kept `retention` after their last change. With an
/// `archive`, every write also goes to PostgreSQL (the run record, node checkpoints, the per-user
/// list), before it counts as done; reads fall back to it once Redis has let a run go, and the
/// per-user list comes from it.
public struct WorkflowRunStore: Sendable {
    let redis: RedisClient
    let archive: HistoryStore?
    let retentionSeconds: Int

    public init(redis: RedisClient, archive: HistoryStore? = nil, retentionSeconds: Int = 7 * 24 * 3600) {
        self.redis = redis
        self.archive = archive
        self.retentionSeconds = retentionSeconds
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// Records a new run (status queued) unless the id is taken; false if it was. PostgreSQL first (an
    /// upsert that never replaces a later state), so a retry after a failure there still writes it.
    public func create(_ record: WorkflowRunRecord) async throws -> Bool {
        let json = String(decoding: try Self.encoder.encode(record), as: UTF8.self)
        try await archive?.saveRun(Self.archived(record, json: json))
        let replies = try await redis.pipeline([
            [
                "SET", RedisArgument(Keyspace.Workflow.record(record.runId)), RedisArgument(json), "NX", "EX",
                RedisArgument(retentionSeconds),
            ]
        ])
        guard replies.first?.string == "OK" else { return false }
        _ = try await redis.pipeline([
            [
                "ZADD", RedisArgument(Keyspace.User.workflowRuns(record.userId)), RedisArgument(record.createdAt),
                RedisArgument(record.runId),
            ],
            ["EXPIRE", RedisArgument(Keyspace.User.workflowRuns(record.userId)), RedisArgument(retentionSeconds)],
        ])
        return true
    }

    /// The run from Redis, or from PostgreSQL once Redis no longer has it.
    public func record(_ runID: String) async throws -> WorkflowRunRecord? {
        if let text = try await redis.send("GET", RedisArgument(Keyspace.Workflow.record(runID))).string {
            return try JSONDecoder().decode(WorkflowRunRecord.self, from: Data(text.utf8))
        }
        guard let archived = try await archive?.archivedRun(runID) else { return nil }
        return try JSONDecoder().decode(WorkflowRunRecord.self, from: Data(archived.recordJSON.utf8))
    }

    public func update(_ record: WorkflowRunRecord) async throws {
        let json = String(decoding: try Self.encoder.encode(record), as: UTF8.self)
        try await both {
            try await redis.send(
                "SET", RedisArgument(Keyspace.Workflow.record(record.runId)), RedisArgument(json), "EX",
                RedisArgument(retentionSeconds))
        } archive: { archive in
            try await archive.saveRun(Self.archived(record, json: json))
        }
    }

    /// The run's checkpoints from Redis, or from PostgreSQL when Redis has none (an expired run).
    public func checkpoints(_ runID: String) async throws -> [String: NodeCheckpoint] {
        let reply = try await redis.send("HGETALL", RedisArgument(Keyspace.Workflow.nodes(runID)))
        let fields = reply.array ?? []
        var result: [String: NodeCheckpoint] = [:]
        for index in stride(from: 0, to: fields.count - 1, by: 2) {
            guard let node = fields[index].string, let json = fields[index + 1].string else { continue }
            result[node] = try JSONDecoder().decode(NodeCheckpoint.self, from: Data(json.utf8))
        }
        if result.isEmpty, let archive {
            for (node, json) in try await archive.nodeCheckpoints(runId: runID) {
                result[node] = try JSONDecoder().decode(NodeCheckpoint.self, from: Data(json.utf8))
            }
        }
        return result
    }

    /// Writes a node's checkpoint (Redis and PostgreSQL at once); a completed one also counts a completion.
    public func checkpoint(_ runID: String, node: String, _ checkpoint: NodeCheckpoint) async throws {
        let json = String(decoding: try Self.encoder.encode(checkpoint), as: UTF8.self)
        var commands: [[RedisArgument]] = [
            ["HSET", RedisArgument(Keyspace.Workflow.nodes(runID)), RedisArgument(node), RedisArgument(json)],
            ["EXPIRE", RedisArgument(Keyspace.Workflow.nodes(runID)), RedisArgument(retentionSeconds)],
        ]
        if checkpoint.status == .completed {
            commands.append(["HINCRBY", RedisArgument(Keyspace.Workflow.completions(runID)), RedisArgument(node), "1"])
            commands.append([
                "EXPIRE", RedisArgument(Keyspace.Workflow.completions(runID)), RedisArgument(retentionSeconds),
            ])
        }
        let at = checkpoint.finishedAt ?? checkpoint.startedAt ?? Clock.epochMilliseconds()
        try await both { [commands] in
            _ = try await redis.pipeline(commands)
        } archive: { archive in
            try await archive.saveNodeCheckpoint(
                runId: runID, nodeId: node, status: checkpoint.status.rawValue, checkpointJSON: json, at: at)
        }
    }

    public func completions(_ runID: String) async throws -> [String: Int] {
        let fields = try await redis.send("HGETALL", RedisArgument(Keyspace.Workflow.completions(runID))).array ?? []
        var result: [String: Int] = [:]
        for index in stride(from: 0, to: fields.count - 1, by: 2) {
            if let node = fields[index].string, let count = fields[index + 1].integer { result[node] = Int(count) }
        }
        return result
    }

    /// A user's runs, newest first: `limit` after the `offset` newest (from PostgreSQL when archived:
    /// Redis forgets runs after the retention).
    public func runs(ofUser userID: String, offset: Int, limit: Int) async throws -> (ids: [String], total: Int) {
        if let archive { return try await archive.archivedRuns(ofUser: userID, offset: offset, limit: limit) }
        let replies = try await redis.pipeline([
            [
                "ZREVRANGE", RedisArgument(Keyspace.User.workflowRuns(userID)), RedisArgument(offset),
                RedisArgument(offset + limit - 1),
            ],
            ["ZCARD", RedisArgument(Keyspace.User.workflowRuns(userID))],
        ])
        return ((replies[0].array ?? []).compactMap(\.string), Int(replies[1].integer ?? 0))
    }

    /// The runs started from one WebSocket session, by the client's workflow id (its newest run under
    /// each), so a reconnecting client can re-attach to them.
    public func runs(ofSession sessionID: String, user userID: String) async throws -> [(
        workflowID: String, runID: String
    )] {
        let key = RedisArgument(Keyspace.User.workflowSession(userID, sessionID: sessionID))
        let fields = try await redis.send("HGETALL", key).array ?? []
        return stride(from: 0, to: fields.count - 1, by: 2).compactMap {
            index -> (workflowID: String, runID: String)? in
            guard let workflow = fields[index].string, let run = fields[index + 1].string else { return nil }
            return (workflow, run)
        }.sorted { $0.workflowID < $1.workflowID }
    }

    /// The run a session's workflow id names: its newest run under that id.
    public func run(workflowID: String, session sessionID: String, user userID: String) async throws -> String? {
        let key = RedisArgument(Keyspace.User.workflowSession(userID, sessionID: sessionID))
        return try await redis.send("HGET", key, RedisArgument(workflowID)).string
    }

    /// KEYS: the session's hash. ARGV: workflow id, the new run, the run read before ("" for none), TTL.
    static let claimScript = RedisScript(
        """
        local current = redis.call('HGET', KEYS[1], ARGV[1])
        if (current or '') ~= ARGV[3] then return 0 end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('EXPIRE', KEYS[1], ARGV[4])
        return 1
        """)

    /// Makes `runID` the session's run of `workflowID`, unless another run took the id since
    /// `replacing` was read (two sockets of one session starting the same id at once): false then.
    public func claim(
        workflowID: String, session sessionID: String, user userID: String, runID: String, replacing: String?
    ) async throws
        -> Bool
    {
        let reply = try await redis.run(
            Self.claimScript, keys: [RedisArgument(Keyspace.User.workflowSession(userID, sessionID: sessionID))],
            arguments: [
                RedisArgument(workflowID), RedisArgument(runID), RedisArgument(replacing ?? ""),
                RedisArgument(retentionSeconds),
            ])
        return reply.integer == 1
    }

    /// Runs the Redis write and the archive's at the same time, so PostgreSQL adds its latency to a
    /// node's checkpoint only where it is the slower of the two.
    private func both(
        _ redisWrite: @escaping @Sendable () async throws -> Void,
        archive write: @escaping @Sendable (HistoryStore) async throws -> Void
    )
        async throws
    {
        guard let archive else { return try await redisWrite() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await redisWrite() }
            group.addTask { try await write(archive) }
            try await group.waitForAll()
        }
    }

    static func archived(_ record: WorkflowRunRecord, json: String) -> ArchivedRun {
        ArchivedRun(
            runId: record.runId, userId: record.userId, sessionId: record.sessionId, status: record.status.rawValue,
            recordJSON: json, createdAt: record.createdAt, updatedAt: record.updatedAt)
    }

    // MARK: limits

    /// Admits a run into its user's executing runs (one key, one script: runners on every partition
    /// agree); false when the user already has `limit` others.
    static let admitScript = RedisScript(
        """
        if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
        if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
        redis.call('SADD', KEYS[1], ARGV[1])
        redis.call('EXPIRE', KEYS[1], ARGV[3])
        return 1
        """)

    public func admit(runID: String, userID: String, limit: Int) async throws -> Bool {
        let key = RedisArgument(Keyspace.User.activeWorkflowRuns(userID))
        if try await redis.send("SCARD", key).integer ?? 0 >= limit {
            // Forget runs that ended without saying so (their record expired, or ended elsewhere).
            let members = (try await redis.send("SMEMBERS", key).array ?? []).compactMap(\.string)
            let records = try await redis.pipeline(
                members.map { ["GET", RedisArgument(Keyspace.Workflow.record($0))] })
            for (member, reply) in zip(members, records) {
                let status = reply.string.flatMap {
                    try? JSONDecoder().decode(WorkflowRunRecord.self, from: Data($0.utf8))
                }?.status
                if status == nil || status?.isTerminal == true {
                    _ = try await redis.send("SREM", key, RedisArgument(member))
                }
            }
        }
        let reply = try await redis.run(
            Self.admitScript, keys: [key],
            arguments: [RedisArgument(runID), RedisArgument(limit), RedisArgument(retentionSeconds)])
        return reply.integer == 1
    }

    public func release(runID: String, userID: String) async throws {
        _ = try await redis.send("SREM", RedisArgument(Keyspace.User.activeWorkflowRuns(userID)), RedisArgument(runID))
    }

    /// Counts one more execution of a run (its first, or a takeover); returns how many there were.
    public func countExecution(_ runID: String) async throws -> Int {
        let replies = try await redis.pipeline([
            ["INCR", RedisArgument(Keyspace.Workflow.executions(runID))],
            ["EXPIRE", RedisArgument(Keyspace.Workflow.executions(runID)), RedisArgument(retentionSeconds)],
        ])
        return Int(replies[0].integer ?? 1)
    }
}
