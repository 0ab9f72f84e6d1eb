import Foundation
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTracing

/// Performs a narrator's journal writes, role steps and frames for one task, keeping the frames'
/// deliveries for the end to wait on.
struct FrameSender {
    let context: ServiceContext
    let envelope: Envelope<AgentTaskRequested>
    let lease: TaskJournal.Lease
    let provider: any ChatProvider
    let request: ProviderRequest
    /// The task's start on both clocks: the narrator's instants become epoch times from it.
    let started: (instant: ContinuousClock.Instant, epochMicroseconds: Int64)
    let frames: TaskFrames
    private(set) var pending: [DeliveryFuture] = []

    init(
        context: ServiceContext, envelope: Envelope<AgentTaskRequested>, lease: TaskJournal.Lease,
        provider: any ChatProvider, request: ProviderRequest,
        started: (instant: ContinuousClock.Instant, epochMicroseconds: Int64)
    ) {
        self.context = context
        self.envelope = envelope
        self.lease = lease
        self.provider = provider
        self.request = request
        self.started = started
        self.frames = TaskFrames(task: envelope.payload)
    }

    private var agentTask: AgentTaskRequested { envelope.payload }
    private var eventIDs: TaskEventIDs { TaskEventIDs(taskID: agentTask.taskId) }
    private var conversation: SwitchboardContracts.Channel { .conversation(agentTask.conversationId) }

    mutating func perform(_ effect: ReplyNarrator.Effect) async throws {
        switch effect {
        case .announceStart:
            try await send(frames.start)
        case .record(let chunks, let complete):
            try await lease.record(chunks, complete: complete)
        case .moveRole(let status, let reason):
            // The time the role thought runs from the task's dispatch to its first answer.
            try await transition(
                to: status, reason: reason, thinkingSince: status == .responding ? agentTask.dispatchedAt : nil)
        case .startReply:
            try await send(frames.replyStart(estimatedLength: provider.estimatedLength(of: request)))
        case .chunk(let chunk):
            let firstTokenAt = chunk.firstTokenAt.map {
                started.epochMicroseconds + Int64((($0 - started.instant) / .microseconds(1)).rounded())
            }
            try await send(
                frames.chunk(chunk, firstTokenAt: firstTokenAt), channel: conversation,
                id: eventIDs.chunk(chunk.index, channel: conversation))
        case .nodeProgress(let chunk, let index, let text):
            guard let node = agentTask.workflowNode else { return }
            let channel = SwitchboardContracts.Channel.workflow(node.runId)
            try await send(
                LLMNodeProgress(node: node, delta: chunk, position: index, text: text, at: Clock.epochMilliseconds()),
                channel: channel, id: eventIDs.chunk(index, channel: channel), routingKey: node.runId)
        case .endReply(let ending):
            try await send(frames.replyEnd(ending, engine: provider.kind.rawValue, at: Clock.epochMilliseconds()))
        case .announceEnd(let ending):
            try await send(frames.end(ending, engine: provider.kind.rawValue))
        case .callModel, .wake, .stopModel, .finish:
            break
        }
    }

    /// A frame the task sends once, on its conversation's channel.
    private mutating func send(_ payload: some FramePayload) async throws {
        try await send(payload, channel: conversation, id: eventIDs.once(payload.frameType, channel: conversation))
    }

    /// `id` comes from `TaskEventIDs`: the same event of a redelivered task has the same id.
    private mutating func send(
        _ payload: some FramePayload, channel: SwitchboardContracts.Channel, id: UUID, routingKey: String? = nil
    ) async throws {
        let event = try ClientEvent(channel: channel, payload: payload)
        let outgoing = Envelope(
            id: id, routingKey: routingKey ?? agentTask.conversationId,
            traceparent: Tracing.causeTraceparent(within: envelope.traceparent), source: context.source,
            payload: event)
        pending.append(try await context.producer.enqueue(EventBus.message(outgoing, topic: Topics.clientEvents)))
    }

    /// Moves the role in Redis and announces the legal steps on the conversation and role channels.
    private mutating func transition(to status: RoleStatus, reason: String, thinkingSince: Int64?) async throws {
        let roles = RoleStateStore(redis: context.redis, logger: context.logger)
        let outcome = try await roles.advance(
            conversation: agentTask.conversationId, role: agentTask.role, path: [status])
        let announcer = RoleAnnouncer(conversation: agentTask.conversationId, role: agentTask.role)
        for step in outcome.applied {
            let actual = thinkingSince.map { max(Clock.epochMilliseconds() - $0, 0) } ?? 0
            for frame in announcer.frames(for: step, reason: reason, thinking: .end(actualMs: actual)) {
                for channel in announcer.channels {
                    try await send(
                        frame, channel: channel, id: eventIDs.roleStep(frame.frameType, to: step.to, channel: channel))
                }
            }
        }
    }
}
