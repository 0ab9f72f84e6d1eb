import Logging
import Metrics
import SwitchboardContracts
import SwitchboardRedis

/// The current state of every role of a conversation, in one Redis hash that the orchestrator and the
/// agent-workers both move through the role state machine. Each move is checked and applied by one
/// script, so two services can never interleave into a transition the machine forbids.
public struct RoleStateStore: Sendable {
    public struct Step: Sendable, Hashable {
        public var from: RoleStatus
        public var to: RoleStatus

        public init(from: RoleStatus, to: RoleStatus) {
            self.from = from
            self.to = to
        }
    }

    public struct Outcome: Sendable, Hashable {
        /// Steps applied now, to announce.
        public var applied: [Step]
        /// The step refused as illegal (nothing after it was tried).
        public var illegal: Step?
    }

    let redis: RedisClient
    let logger: Logger
    /// Kept for a day after the last move; a conversation's roles then read as IDLE again.
    public var ttlMilliseconds: Int64 = 24 * 3600 * 1000

    public init(redis: RedisClient, logger: Logger) {
        self.redis = redis
        self.logger = logger
    }

    /// Moves `role` along `path`. When the first step is impossible but the role already stands on the
    /// path (a retried handler), the steps up to there are skipped silently; otherwise an illegal step is
    /// logged and counted, never applied, and nothing after it is tried.
    public func advance(conversation: String, role: String, path: [RoleStatus]) async throws -> Outcome {
        var arguments: [RedisArgument] = [
            RedisArgument(role), RedisArgument(ttlMilliseconds), RedisArgument(path.count),
        ]
        for target in path {
            arguments.append(RedisArgument(target.rawValue))
            arguments.append(
                RedisArgument("," + RoleStateMachine.sources(of: target).map(\.rawValue).joined(separator: ",") + ","))
        }
        let reply = try await redis.run(
            Self.script, keys: [RedisArgument(Keyspace.Conversation.roles(conversation))], arguments: arguments)
        let values = (reply.array ?? []).compactMap(\.string)
        guard values.count >= 3 else {
            throw RedisError(.protocolViolation, "role transition script answered \(reply)")
        }
        var steps: [Step] = []
        var index = 3
        while index + 1 < values.count {
            if let from = RoleStatus(rawValue: values[index]), let to = RoleStatus(rawValue: values[index + 1]) {
                steps.append(Step(from: from, to: to))
            }
            index += 2
        }
        var outcome = Outcome(applied: steps, illegal: nil)
        if values[0] == "0", let from = RoleStatus(rawValue: values[1]), let to = RoleStatus(rawValue: values[2]) {
            outcome.illegal = Step(from: from, to: to)
            Self.illegalCounter.increment()
            logger.error(
                "illegal role transition refused",
                metadata: [
                    "role.name": "\(role)", "role.from": "\(from.rawValue)", "role.to": "\(to.rawValue)",
                    "conversation.id": "\(conversation)",
                ])
        }
        return outcome
    }

    /// Every role's state (roles never moved are IDLE and absent).
    public func states(conversation: String) async throws -> [String: RoleStatus] {
        let reply = try await redis.send("HGETALL", RedisArgument(Keyspace.Conversation.roles(conversation)))
        let values = (reply.array ?? []).compactMap(\.string)
        var states: [String: RoleStatus] = [:]
        var index = 0
        while index + 1 < values.count {
            states[values[index]] = RoleStatus(rawValue: values[index + 1])
            index += 2
        }
        return states
    }

    static let illegalCounter = Counter(label: "sb_role_illegal_transitions_total")

    /// KEYS[1] the hash; ARGV: role, ttl, n, then per step its target and ",SOURCE,…," of the allowed sources.
    /// Answers {ok, state, refused target, from₁, to₁, from₂, to₂…}.
    static let script = RedisScript(
        """
        local role = ARGV[1]
        local current = redis.call('HGET', KEYS[1], role) or 'IDLE'
        local n = tonumber(ARGV[3])
        local done = 0
        if not string.find(ARGV[5], ',' .. current .. ',', 1, true) then
          -- The first step is not possible from here: a retried call? Skip the steps already taken.
          for i = 1, n do
            if ARGV[2 + 2 * i] == current then done = i end
          end
        end
        local out = {'1', '', ''}
        for i = done + 1, n do
          local target = ARGV[2 + 2 * i]
          if string.find(ARGV[3 + 2 * i], ',' .. current .. ',', 1, true) then
            table.insert(out, current)
            table.insert(out, target)
            current = target
          else
            out[1] = '0'
            out[3] = target
            break
          end
        end
        out[2] = current
        redis.call('HSET', KEYS[1], role, current)
        redis.call('PEXPIRE', KEYS[1], ARGV[2])
        return out
        """)
}
