import Foundation
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime

/// The ids of one agent task's client events, named by the task and the event's place in the answer, so
/// a redelivered task that streams again publishes ids the notifier has seen and drops.
public struct TaskEventIDs: Sendable, Hashable {
    public let taskID: String

    public init(taskID: String) {
        self.taskID = taskID
    }

    /// A frame the task sends once per channel (agent_start, the reply's start and end, the completion).
    public func once(_ frameType: String, channel: SwitchboardContracts.Channel) -> UUID {
        NameBasedUUID.make("agent-task:\(taskID):\(channel):\(frameType)")
    }

    /// The answer's chunk at `index` (its place in the answer: 0, 1, 2, …).
    public func chunk(_ index: Int, channel: SwitchboardContracts.Channel) -> UUID {
        NameBasedUUID.make("agent-task:\(taskID):\(channel):chunk:\(index)")
    }

    /// The envelope of the task's result for the orchestrator (`AgentTaskCompleted`).
    public var result: UUID { NameBasedUUID.make("agent-task:\(taskID):result") }

    /// A role-state frame of the step to `status`.
    public func roleStep(_ frameType: String, to status: RoleStatus, channel: SwitchboardContracts.Channel) -> UUID {
        NameBasedUUID.make("agent-task:\(taskID):\(channel):\(frameType):\(status.rawValue)")
    }
}

/// What a task's journal says about earlier attempts at it.
public struct TaskProgress: Sendable, Equatable {
    /// The result was published: a redelivery has nothing to do.
    public var done = false
    /// The chunks recorded before they were sent, in order: a resumed attempt sends them again (with
    /// their ids: the notifier publishes only those the crashed attempt did not get out) and goes on after.
    public var chunks: [String] = []
    /// The model's answer was complete and its last chunk is among `chunks`: no model call is needed.
    public var generated = false

    public init(done: Bool = false, chunks: [String] = [], generated: Bool = false) {
        self.done = done
        self.chunks = chunks
        self.generated = generated
    }

    /// The answer so far, as the client has (or will have) it.
    public var text: String { chunks.joined() }

    /// Each recorded chunk's `position` (seed 000's character offset), and the next one's.
    public var positions: (each: [Int], next: Int) {
        var offset = 0
        var each: [Int] = []
        for chunk in chunks {
            each.append(offset)
            offset += ChatCentreDialect.length(chunk)
        }
        return (each, offset)
    }
}

/// One task's state in Redis, under the task's hash tag (`Keyspace.Task`), so each script touches
/// one slot:
///
/// - `lease`: the attempt running the task (a random token, renewed while it runs). A redelivery of a
///   task still running elsewhere, or in this process, waits for it instead of streaming beside it.
/// - `chunks`: the answer's chunks, each appended *before* it is sent (write-ahead). Appends check the
///   lease, so an attempt that lost it cannot write after its successor.
/// - `generated`: set with the last chunk when the model's answer was complete.
/// - `done`: set once the task's result is on the bus, to that time (epoch milliseconds: the orchestrator
///   tells a result lost on the bus by it, `LostResults`); the rest is deleted then.
public struct TaskJournal: Sendable {
    /// How long a lease lives without renewal: a SIGKILLed attempt's task is taken over after this.
    public static let leaseTTLMilliseconds: Int64 = 10_000
    public static let leaseRenewal: Duration = .seconds(3)
    /// The chunks of an unfinished task: as long as the notifier remembers event ids
    /// (`ChannelPublisher.Limits.streamTTLSeconds`), after which sending them again would show them twice.
    public static let journalTTLSeconds = 3600
    /// A finished task is not run again for a day (a later replay from a dead-letter topic runs it again).
    public static let doneTTLSeconds = 24 * 3600

    /// The lease was taken over (this attempt stalled past its TTL): it must stop writing.
    public struct LeaseLost: Error, CustomStringConvertible {
        public var taskID: String
        public var description: String { "task \(taskID): its lease passed to another attempt" }
    }

    let redis: RedisClient

    public init(redis: RedisClient) {
        self.redis = redis
    }

    /// Runs `body` holding the task's lease (waiting for another attempt's to end or expire), renewing
    /// it meanwhile; releases it when `body` throws, so a retry need not wait for it to expire.
    public func withLease<T: Sendable>(taskID: String, _ body: (Lease) async throws -> T) async throws -> T {
        let lease = Lease(journal: self, taskID: taskID, token: UUID().uuidString)
        while !(try await lease.acquire()) {
            try await Task.sleep(for: .milliseconds(250))
        }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // A failed renewal is not fatal here: the fenced writes fail if the lease is really lost.
                while !Task.isCancelled {
                    try await Task.sleep(for: Self.leaseRenewal)
                    _ = try? await lease.renew()
                }
            }
            defer { group.cancelAll() }
            do {
                return try await body(lease)
            } catch {
                try? await lease.release()
                throw error
            }
        }
    }

    /// One attempt's hold on a task.
    public struct Lease: Sendable {
        let journal: TaskJournal
        public let taskID: String
        let token: String

        private var keys: [RedisArgument] {
            [
                Keyspace.Task.lease(taskID), Keyspace.Task.chunks(taskID), Keyspace.Task.generated(taskID),
                Keyspace.Task.done(taskID),
            ]
            .map { RedisArgument($0) }
        }

        func acquire() async throws -> Bool {
            let reply = try await journal.redis.send(
                "SET", RedisArgument(Keyspace.Task.lease(taskID)), RedisArgument(token), "NX", "PX",
                RedisArgument(TaskJournal.leaseTTLMilliseconds))
            return reply.string == "OK"
        }

        func renew() async throws -> Bool {
            try await journal.redis.run(
                TaskJournal.renewScript, keys: keys,
                arguments: [RedisArgument(token), RedisArgument(TaskJournal.leaseTTLMilliseconds)]
            ).integer == 1
        }

        func release() async throws {
            try await journal.redis.run(TaskJournal.releaseScript, keys: keys, arguments: [RedisArgument(token)])
        }

        /// What earlier attempts left.
        public func progress() async throws -> TaskProgress {
            let reply = try await journal.redis.run(TaskJournal.loadScript, keys: keys, arguments: [])
            guard let values = reply.array, values.count == 3, let chunks = values[2].array else {
                throw RedisError(.protocolViolation, "task journal load answered \(reply)")
            }
            return TaskProgress(
                done: values[0].integer == 1, chunks: chunks.map { $0.string ?? "" }, generated: values[1].integer == 1)
        }

        /// Records chunks about to be sent; `complete` marks the model's answer whole with the last of them.
        public func record(_ chunks: [String], complete: Bool = false) async throws {
            guard !chunks.isEmpty || complete else { return }
            var arguments = [
                RedisArgument(token), RedisArgument(TaskJournal.journalTTLSeconds), RedisArgument(complete ? 1 : 0),
            ]
            arguments += chunks.map { RedisArgument($0) }
            let reply = try await journal.redis.run(TaskJournal.recordScript, keys: keys, arguments: arguments)
            guard reply.integer == 1 else { throw LeaseLost(taskID: taskID) }
        }

        /// The task's result is on the bus: marks it done and drops its journal and lease.
        public func finish() async throws {
            try await journal.redis.run(
                TaskJournal.finishScript, keys: keys,
                arguments: [
                    RedisArgument(token), RedisArgument(TaskJournal.doneTTLSeconds),
                    RedisArgument(Clock.epochMilliseconds()),
                ])
        }
    }

    // KEYS of every script: lease, chunks, generated, done.

    static let loadScript = RedisScript(
        """
        return {redis.call('EXISTS', KEYS[4]), redis.call('EXISTS', KEYS[3]), redis.call('LRANGE', KEYS[2], 0, -1)}
        """)

    /// ARGV: token, TTL s, complete (0/1), chunks…
    static let recordScript = RedisScript(
        """
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        for i = 4, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
        if ARGV[3] == '1' then redis.call('SET', KEYS[3], '1', 'EX', ARGV[2]) end
        if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
        return 1
        """)

    /// ARGV: token, TTL ms.
    static let renewScript = RedisScript(
        """
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        return 1
        """)

    /// ARGV: token.
    static let releaseScript = RedisScript(
        """
        if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
        return 1
        """)

    /// ARGV: token, done TTL s, now (epoch ms). Done is set whoever holds the lease (the result is out); the journal is
    /// deleted only by its holder, never under an attempt still writing it.
    static let finishScript = RedisScript(
        """
        redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[2])
        if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
        return 1
        """)
}
