import Foundation
import Logging
import Metrics
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardStore
import SwitchboardTracing

/// Applies the engine's decisions: load the record, decide, publish, store. Client events get ids derived
/// from the input and the record's version, so a retried step publishes the same ids and the notifier
/// drops the repeats.
struct CollaborationRunner: Sendable {
    let context: ServiceContext
    let engine: CollaborationEngine
    let records: RecordStore
    let roles: RoleStateStore
    let history: HistoryContext?
    let lostResults: LostResults

    init(context: ServiceContext, engine: CollaborationEngine, history: HistoryContext? = nil) {
        self.context = context
        self.engine = engine
        self.history = history
        self.records = RecordStore(redis: context.redis)
        self.roles = RoleStateStore(redis: context.redis, logger: context.logger)
        self.lostResults = LostResults(redis: context.redis)
    }

    func handle(_ envelope: Envelope<ChatMessageSubmitted>) async throws {
        let message = envelope.payload
        try await step(
            conversation: message.conversationId, input: envelope.id, traceparent: envelope.traceparent,
            answering: message
        ) { record, resultsLost in
            engine.receive(
                message: envelope.payload, traceparent: envelope.traceparent, now: Clock.epochMilliseconds(),
                record: &record, resultsLost: resultsLost)
        }
    }

    func handle(_ envelope: Envelope<AgentTaskCompleted>) async throws {
        try await step(
            conversation: envelope.payload.conversationId, input: envelope.id, traceparent: envelope.traceparent
        ) { record, _ in
            engine.receive(result: envelope.payload, now: Clock.epochMilliseconds(), record: &record)
        }
    }

    func handle(_ envelope: Envelope<ChatRoleFocusRequested>) async throws {
        try await step(
            conversation: envelope.payload.conversationId, input: envelope.id, traceparent: envelope.traceparent
        ) { record, _ in
            engine.receive(focus: envelope.payload, record: &record)
        }
    }

    func handle(_ envelope: Envelope<ChatInterruptRequested>) async throws {
        try await step(
            conversation: envelope.payload.conversationId, input: envelope.id, traceparent: envelope.traceparent
        ) { record, _ in
            engine.receive(interrupt: envelope.payload, now: Clock.epochMilliseconds(), record: &record)
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
        decide: (inout ConversationRecord, _ resultsLost: Bool) -> [CollaborationEffect]
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
            // Asked only when a new message finds its conversation busy: whether the run it waits for is dead.
            var lostRun: String?
            if let message, !record.seen.contains(message.messageId), let run = record.run,
                try await lostResults.areLost(for: run, now: Clock.epochMilliseconds())
            {
                lostRun = run.runId
            }
            let effects = decide(&record, lostRun != nil)
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
            if let lostRun {
                OrchestratorMetrics.runsWithLostResults.increment()
                context.logger.warning(
                    "a run's results were lost on the bus; it is abandoned for the next message",
                    metadata: ["conversation.id": "\(conversation)", "run.id": "\(lostRun)"])
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
        // Every message of the step is caused by the same span: found once, not per event.
        let cause = Tracing.causeTraceparent(within: traceparent)
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
                    traceparent: cause, source: context.source, payload: event)
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
                    traceparent: cause, source: context.source, payload: task)
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
