import ArgumentParser
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardStore

/// Runs the AI team's collaboration: consumes user messages and the roles' results and decides, from the
/// conversation's record in Redis, what happens next. Any instance can take any step.
public enum Orchestrator {
    public struct Options: ParsableArguments {
        @Option(help: "The role team's JSON file (env SWITCHBOARD_TEAM_FILE; default: the built-in chat-centre team).")
        public var teamFile: String?

        public init() {}

        public func team(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Team {
            let path = teamFile ?? environment["SWITCHBOARD_TEAM_FILE"].flatMap { $0.isEmpty ? nil : $0 }
            guard let path else { return .chatCentre }
            return try Team.load(path: path)
        }
    }

    public static func run(configuration: SwitchboardConfiguration, team: Team) async throws {
        try team.validate()
        let context = try await ServiceRunner.makeContext(configuration: configuration)
        let consumer = try context.makeConsumer(group: ConsumerGroups.orchestrator)
        let store = HistoryStore(
            configuration: try StoreConfiguration(url: configuration.postgresURL), logger: context.logger)
        context.readiness.add("postgres") { await store.isReachable() }
        let runner = CollaborationRunner(
            context: context, engine: CollaborationEngine(team: team),
            history: HistoryContext(store: store, logger: context.logger))
        var router = EventRouter(service: configuration.service.rawValue)
        router.on(ChatMessageSubmitted.self) { try await runner.handle($0) }
        router.on(AgentTaskCompleted.self) { try await runner.handle($0) }
        router.on(ChatInterruptRequested.self) { try await runner.handle($0) }
        router.on(ChatRoleFocusRequested.self) { try await runner.handle($0) }
        let processor = KafkaEventProcessor(
            consumer: consumer, deadLetterProducer: context.producer, logger: context.logger, router: router)
        context.logger.info("team", metadata: ["team.name": "\(team.name)", "team.roles": "\(team.roles.map(\.name))"])
        try await ServiceRunner.run(
            context: context,
            services: [store, TeamAnnouncer(team: team, redis: context.redis, logger: context.logger), processor])
    }
}

/// Writes the team's card to Redis (no expiry: the team outlives any one orchestrator instance), retrying
/// until Redis answers. The gateways check REQUEST_ROLE_FOCUS, snapshot role states and list
/// `/v1/models` from it.
struct TeamAnnouncer: Service {
    let team: Team
    let redis: RedisClient
    let logger: Logger

    var card: TeamCard {
        TeamCard(
            name: team.name, roles: team.roles.map { TeamCard.Role(name: $0.name, responsibility: $0.responsibility) },
            finalRole: team.finalRole)
    }

    func run() async throws {
        let store = TeamCardStore(redis: redis)
        var attempt = 0
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await store.announce(card)
                break
            } catch {
                attempt += 1
                if attempt == 1 { logger.warning("cannot announce the team yet", metadata: ["error": "\(error)"]) }
                try? await Task.sleep(for: .milliseconds(200 * min(attempt, 10)))
            }
        }
        try? await gracefulShutdown()
    }
}

/// Applies the engine's decisions: load the record, decide, publish, store. Client events get ids derived
/// from the input and the record's version, so a retried step publishes the same ids and the notifier
/// drops the repeats.
struct CollaborationRunner: Sendable {
    let context: ServiceContext
    let engine: CollaborationEngine
    let records: RecordStore
    let roles: RoleStateStore
    let history: HistoryContext?

    init(context: ServiceContext, engine: CollaborationEngine, history: HistoryContext? = nil) {
        self.context = context
        self.engine = engine
        self.history = history
        self.records = RecordStore(redis: context.redis)
        self.roles = RoleStateStore(redis: context.redis, logger: context.logger)
    }

    func handle(_ envelope: Envelope<ChatMessageSubmitted>) async throws {
        let message = envelope.payload
        try await step(
            conversation: message.conversationId, input: envelope.id, traceparent: envelope.traceparent,
            answering: message
        ) {
            engine.receive(
                message: envelope.payload, traceparent: envelope.traceparent, now: Clock.epochMilliseconds(),
                record: &$0)
        }
    }

    func handle(_ envelope: Envelope<AgentTaskCompleted>) async throws {
        try await step(
            conversation: envelope.payload.conversationId, input: envelope.id, traceparent: envelope.traceparent
        ) {
            engine.receive(result: envelope.payload, now: Clock.epochMilliseconds(), record: &$0)
        }
    }

    func handle(_ envelope: Envelope<ChatRoleFocusRequested>) async throws {
        try await step(
            conversation: envelope.payload.conversationId, input: envelope.id, traceparent: envelope.traceparent
        ) {
            engine.receive(focus: envelope.payload, record: &$0)
        }
    }

    func handle(_ envelope: Envelope<ChatInterruptRequested>) async throws {
        try await step(
            conversation: envelope.payload.conversationId, input: envelope.id, traceparent: envelope.traceparent
        ) {
            engine.receive(interrupt: envelope.payload, now: Clock.epochMilliseconds(), record: &$0)
        }
    }

    /// Optimistic concurrency: a record changed by another instance meanwhile means deciding again.
    /// The decision is stored before any of its effects is published, with the effects kept beside it
    /// (the outbox) until they are out: a role's answer can then never arrive before the run that
    /// asked for it is stored, and a crash between the two is repaired when Kafka delivers the same
    /// input again. A new record's history is read from PostgreSQL when the step answers a message (a
    /// miss of the Redis cache).
    private func step(
        conversation: String, input: UUID, traceparent: String, answering message: ChatMessageSubmitted? = nil,
        decide: (inout ConversationRecord) -> [CollaborationEffect]
    ) async throws {
        for _ in 0..<20 {
            let loaded = try await records.load(conversation: conversation, input: input)
            if let unsent = loaded.outbox {
                // This input was decided before, but its effects may not all be out: send them (same ids).
                try await apply(unsent.effects, conversation: conversation, seed: unsent.seed, traceparent: traceparent)
                try await records.clearOutbox(conversation: conversation, input: input)
                return
            }
            var record = loaded.record ?? ConversationRecord()
            if loaded.record == nil, let message, let history {
                record.history = await history.turns(
                    conversation: conversation, excluding: message.messageId, limit: engine.team.historyLimit)
            }
            let effects = decide(&record)
            guard !effects.isEmpty || record != (loaded.record ?? ConversationRecord()) else { return }
            let outbox =
                effects.isEmpty ? nil : RecordStore.Outbox(seed: "\(input)/\(loaded.version)", effects: effects)
            guard
                try await records.store(
                    record, outbox: outbox, conversation: conversation, input: input, expectedVersion: loaded.version)
            else {
                OrchestratorMetrics.recordConflicts.increment()
                continue
            }
            guard let outbox else { return }
            try await apply(outbox.effects, conversation: conversation, seed: outbox.seed, traceparent: traceparent)
            try await records.clearOutbox(conversation: conversation, input: input)
            return
        }
        throw RecordStore.ConflictError()
    }

    private func apply(_ effects: [CollaborationEffect], conversation: String, seed: String, traceparent: String)
        async throws
    {
        var pending: [DeliveryFuture] = []
        var index = 0
        func publish(_ frameType: String, _ data: JSONValue, roleActivity: Bool) async throws {
            for channel in roleActivity
                ? [Channel.conversation(conversation), .roles(conversation)] : [.conversation(conversation)]
            {
                index += 1
                let event = ClientEvent(channel: channel, frameType: frameType, data: data)
                let envelope = Envelope(
                    id: Self.uuid("\(seed)/\(index)"), routingKey: conversation,
                    traceparent: TraceContext.child(of: traceparent), source: context.source, payload: event)
                pending.append(
                    try await context.producer.enqueue(EventBus.message(envelope, topic: Topics.clientEvents)))
            }
        }
        for effect in effects {
            switch effect {
            case .event(let frameType, let data, let roleActivity):
                try await publish(frameType, data, roleActivity: roleActivity)
            case .transition(let role, let path, let reason, let estimatedMs):
                let outcome = try await roles.advance(conversation: conversation, role: role, path: path)
                let announcer = RoleAnnouncer(conversation: conversation, role: role)
                for step in outcome.applied {
                    for frame in announcer.frames(
                        for: step, reason: reason, thinking: .start(estimatedMs: Int64(estimatedMs ?? 0)))
                    {
                        try await publish(frame.frameType, try frame.data(), roleActivity: true)
                    }
                }
            case .task(let task):
                // The role's events must reach the client before its answer: wait for them first.
                for future in pending { _ = try await future.report() }
                pending.removeAll()
                index += 1
                let envelope = Envelope(
                    id: Self.uuid("\(seed)/\(index)"), routingKey: conversation,
                    traceparent: TraceContext.child(of: traceparent), source: context.source, payload: task)
                try await context.publish(envelope, to: Topics.agentTasks)
                OrchestratorMetrics.tasks(role: task.role).increment()
            case .stopRun(let runID):
                try await RunControl(redis: context.redis).stop(runID: runID)
                OrchestratorMetrics.runsStopped.increment()
            }
        }
        for future in pending { _ = try await future.report() }
    }

    static func uuid(_ name: String) -> UUID { NameBasedUUID.make(name) }
}

/// A conversation's record as JSON in a Redis hash with a version, replaced only by compare-and-set,
/// and beside it, per input, the effects decided but not yet all published.
struct RecordStore: Sendable {
    struct ConflictError: Error, CustomStringConvertible {
        var description: String { "the conversation's record kept changing; giving up this attempt" }
    }

    /// One input's effects and the seed of their event ids.
    struct Outbox: Codable, Sendable, Equatable {
        var seed: String
        var effects: [CollaborationEffect]
    }

    struct Loaded {
        var record: ConversationRecord?
        var version: Int64
        var outbox: Outbox?
    }

    let redis: RedisClient
    var ttlMilliseconds: Int64 = 24 * 3600 * 1000

    /// The record and its outbox: one hash tag, so one script reads or writes both.
    static func keys(_ conversation: String) -> [RedisArgument] {
        [
            RedisArgument(Keyspace.Conversation.record(conversation)),
            RedisArgument(Keyspace.Conversation.outbox(conversation)),
        ]
    }

    func load(conversation: String, input: UUID) async throws -> Loaded {
        let reply = try await redis.run(
            Self.loadScript,
            keys: Self.keys(conversation),
            arguments: [RedisArgument(input.uuidString)])
        let values = reply.array ?? []
        guard values.count == 3 else { throw RedisError(.protocolViolation, "record load answered \(reply)") }
        var loaded = Loaded(record: nil, version: values[0].integer ?? 0, outbox: nil)
        if let bytes = values[1].bytes {
            loaded.record = try JSONDecoder().decode(ConversationRecord.self, from: Data(bytes))
        }
        if let bytes = values[2].bytes { loaded.outbox = try JSONDecoder().decode(Outbox.self, from: Data(bytes)) }
        return loaded
    }

    /// False when another instance stored a newer version first (nothing is written then).
    func store(
        _ record: ConversationRecord, outbox: Outbox?, conversation: String, input: UUID, expectedVersion: Int64
    ) async throws -> Bool {
        let json = try JSONEncoder().encode(record)
        let outboxJSON = try outbox.map { try JSONEncoder().encode($0) } ?? Data()
        let reply = try await redis.run(
            Self.compareAndSet,
            keys: Self.keys(conversation),
            arguments: [
                RedisArgument(expectedVersion), RedisArgument(bytes: Array(json)), RedisArgument(ttlMilliseconds),
                RedisArgument(input.uuidString), RedisArgument(bytes: Array(outboxJSON)),
            ])
        return reply.integer == 1
    }

    func clearOutbox(conversation: String, input: UUID) async throws {
        try await redis.send(
            "HDEL", RedisArgument(Keyspace.Conversation.outbox(conversation)), RedisArgument(input.uuidString))
    }

    static let loadScript = RedisScript(
        """
        return {redis.call('HGET', KEYS[1], 'v') or '0', redis.call('HGET', KEYS[1], 's'), redis.call('HGET', KEYS[2], ARGV[1])}
        """)

    /// ARGV: expected version, record JSON, TTL ms, input id, outbox JSON (empty: none).
    static let compareAndSet = RedisScript(
        """
        local v = redis.call('HGET', KEYS[1], 'v') or '0'
        if v ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'v', tostring(tonumber(v) + 1), 's', ARGV[2])
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        if ARGV[5] ~= '' then
          redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
          redis.call('PEXPIRE', KEYS[2], ARGV[3])
        end
        return 1
        """)
}
