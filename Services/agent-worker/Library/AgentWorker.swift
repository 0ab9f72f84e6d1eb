import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import Synchronization

/// Consumes agent tasks, streams each role's answer to its conversation and reports the result to the
/// task's requester, on the topic its `replyTo` names.
public enum AgentWorker {
    public struct Options: ParsableArguments {
        @Option(help: "Offline engine tokens per second, 0 for instant (env SWITCHBOARD_AGENT_TOKEN_RATE; default 40).")
        public var tokenRate: Double?
        @Option(
            help:
                "Offline engine delay before the first token in ms (env SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS; default 150)."
        )
        public var firstTokenDelayMs: Int?
        @Option(
            help:
                "Tasks run at once per partition, so a conversation's parallel roles overlap (env SWITCHBOARD_AGENT_CONCURRENCY; default 16)."
        )
        public var concurrency: Int?
        @Option(
            help:
                "OpenAI-compatible servers this worker may call, BASE_URL[=KEY_VARIABLE],… (env SWITCHBOARD_AGENT_PROVIDERS; default none)."
        )
        public var providers: String?

        public init() {}

        public func engineSettings() throws -> OfflineEngine.Settings {
            OfflineEngine.Settings(
                tokensPerSecond: try setting(tokenRate, environment: "AGENT_TOKEN_RATE", default: 40),
                firstTokenDelay: .milliseconds(
                    try setting(firstTokenDelayMs, environment: "AGENT_FIRST_TOKEN_DELAY_MS", default: 150)))
        }

        /// The servers and keys this worker uses (none unless configured: the offline engine only).
        public func providerAllowList() throws -> ProviderAllowList {
            do {
                return try ProviderAllowList(
                    parsing: try setting(providers, environment: "AGENT_PROVIDERS", default: ""))
            } catch let error as ProviderAllowListError {
                throw ConfigurationError(error.description)
            }
        }

        public func tasksPerPartition() throws -> Int {
            let value = try setting(concurrency, environment: "AGENT_CONCURRENCY", default: 16)
            guard (1...1024).contains(value) else {
                throw ConfigurationError("SWITCHBOARD_AGENT_CONCURRENCY must be 1…1024")
            }
            return value
        }
    }

    public static func run(
        configuration: SwitchboardConfiguration, engine: OfflineEngine, tasksPerPartition: Int = 16,
        allowList: ProviderAllowList = ProviderAllowList()
    ) async throws {
        let context = try await ServiceRunner.makeContext(configuration: configuration)
        let consumer = try context.makeConsumer(group: ConsumerGroups.agentWorker)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: Providers.httpConfiguration)
        let subscriber = RedisSubscriber(endpoint: try configuration.redisEndpoint, logger: context.logger)
        let deviceTools = DeviceToolCaller(
            redis: context.redis, subscriber: subscriber, instance: configuration.instanceID)
        let providers = Providers(
            offline: OfflineProvider(engine: engine), client: http, breakers: CircuitBreakers(), allowList: allowList,
            deviceTools: deviceTools)
        let stops = RunStops()
        let listener = RunStopListener(subscriber: subscriber, stops: stops)
        context.readiness.add("run-stops") { listener.isListening }
        let processor = KafkaEventProcessor(
            consumer: consumer, deadLetterProducer: context.producer, concurrencyPerPartition: tasksPerPartition,
            logger: context.logger
        ) { message in
            let envelope = try EnvelopeCodec.decode(AgentTaskRequested.self, from: message.value)
            try await StreamingTask(context: context, providers: providers, stops: stops, envelope: envelope).run()
        }
        context.logger.info(
            "offline engine", metadata: ["engine.tokens_per_second": "\(engine.settings.tokensPerSecond)"])
        // Listed before the processor, so the HTTP client shuts down after the last task.
        try await ServiceRunner.run(
            context: context, services: [HTTPClientService(client: http), subscriber, listener, deviceTools, processor])
    }
}

/// The stop handlers of the tasks running in this process, by run.
final class RunStops: Sendable {
    private let handlers = Mutex<[String: [UUID: @Sendable () -> Void]]>([:])

    func register(runID: String, _ handler: @escaping @Sendable () -> Void) -> UUID {
        let id = UUID()
        handlers.withLock { $0[runID, default: [:]][id] = handler }
        return id
    }

    func unregister(runID: String, id: UUID) {
        handlers.withLock { handlers in
            handlers[runID]?.removeValue(forKey: id)
            if handlers[runID]?.isEmpty == true { handlers.removeValue(forKey: runID) }
        }
    }

    func stop(runID: String) {
        let stopping = handlers.withLock { $0[runID].map { Array($0.values) } ?? [] }
        for handler in stopping { handler() }
    }
}

/// Hears the orchestrator's stop messages and stops this process's tasks of that run.
final class RunStopListener: Service, Sendable {
    let subscriber: RedisSubscriber
    let stops: RunStops
    private let listening = Atomic<Bool>(false)

    init(subscriber: RedisSubscriber, stops: RunStops) {
        self.subscriber = subscriber
        self.stops = stops
    }

    var isListening: Bool { listening.load(ordering: .relaxed) }

    func run() async throws {
        await subscriber.holdSubscription(
            RunControl.stopChannel, subscribed: { self.listening.store(true, ordering: .relaxed) }
        ) {
            [stops] message in stops.stop(runID: String(decoding: message, as: UTF8.self))
        }
        listening.store(false, ordering: .relaxed)
    }
}

/// Shuts the HTTP client down at the end.
struct HTTPClientService: Service {
    let client: HTTPClient

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}

/// The provider each task names: the offline engine, or an OpenAI-compatible server of the worker's
/// allow-list behind retries and a circuit breaker. API keys come from this process's environment, by
/// the name the allow-list gives (a task's `apiKeyEnv` is not read).
struct Providers: Sendable {
    let offline: OfflineProvider
    let client: HTTPClient
    let breakers: CircuitBreakers
    let allowList: ProviderAllowList
    /// Voice devices' MCP tools (DeviceTools.swift).
    let deviceTools: DeviceToolCaller
    var environment: [String: String] = ProcessInfo.processInfo.environment

    /// Connect within 5 s; a silent stream fails after 60 s. Failed connections are not retried by the
    /// client itself: ResilientProvider retries with its own backoff and feeds the circuit breaker.
    static var httpConfiguration: HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(5), read: .seconds(60)))
        configuration.connectionPool.retryConnectionEstablishment = false
        return configuration
    }

    func provider(for spec: ProviderSpec?) -> any ChatProvider {
        guard let spec, spec.kind == "openai" else { return offline }
        guard let allowed = allowList.entry(for: spec.baseURL) else {
            return RefusedProvider(baseURL: spec.baseURL ?? "(none)")
        }
        let key = allowed.keyVariable.flatMap { environment[$0] }
        return ResilientProvider(
            base: OpenAIProvider(spec: spec, apiKey: key, client: client), breakerKey: spec.breakerKey,
            breakers: breakers)
    }
}

/// One role's answer: agent_start, the chunks (the final role's as the MESSAGE_STREAM_* reply), then
/// agent_complete or error, and the result for the orchestrator. Chunks are enqueued without waiting
/// for each acknowledgement (order is kept per key by the idempotent producer); the end waits for all.
/// A workflow llm node's task streams its chunks as node_progress on the run's channel instead, and
/// nothing else (the runner reports the node's status).
struct StreamingTask {
    let context: ServiceContext
    let providers: Providers
    let stops: RunStops
    let envelope: Envelope<AgentTaskRequested>

    private enum Piece: Sendable {
        case delta(String)
        case tick
        case end
        case failure(ProviderError)
        /// The user stopped the run.
        case stopped
    }

    /// Runs the task once: a redelivery of a finished task does nothing, one of a task cut short (its
    /// worker died) sends again what was recorded, under the same ids, and goes on from there.
    func run() async throws {
        let task = envelope.payload
        try await TaskJournal(redis: context.redis).withLease(taskID: task.taskId) { lease in
            let progress = try await lease.progress()
            if progress.done {
                // Its result is on the bus: the task came again (a redelivery, or an orchestrator that
                // dispatched it again after a crash) and must not be answered twice.
                Counter(label: "sb_agent_tasks_redelivered_total", dimensions: [("outcome", "done")]).increment()
                context.logger.info("task already done: not run again", metadata: ["task.id": "\(task.taskId)"])
                try await lease.release()
                return
            }
            if !progress.chunks.isEmpty || progress.generated {
                Counter(label: "sb_agent_tasks_redelivered_total", dimensions: [("outcome", "resumed")]).increment()
                context.logger.info(
                    "resuming a task cut short",
                    metadata: ["task.id": "\(task.taskId)", "task.chunks": "\(progress.chunks.count)"])
            }
            try await run(lease: lease, progress: progress)
        }
    }

    private func run(lease: TaskJournal.Lease, progress recorded: TaskProgress) async throws {
        let task = envelope.payload
        let eventIDs = TaskEventIDs(taskID: task.taskId)
        let conversation = SwitchboardContracts.Channel.conversation(task.conversationId)
        let workflowNode = task.workflowNode
        let collaborative = task.runId != nil && workflowNode == nil
        let isFinal = task.isFinal ?? true
        let provider = DeviceToolProvider.wrap(
            providers.provider(for: task.provider), toolbox: task.deviceTools, caller: providers.deviceTools,
            offline: providers.offline)
        let roles = RoleStateStore(redis: context.redis, logger: context.logger)
        let started = ContinuousClock.now
        let startedAt = Clock.epochMilliseconds()
        var pending: [DeliveryFuture] = []
        let ids: [String: JSONValue] = [
            "messageId": .string(task.replyMessageId), "conversationId": .string(task.conversationId),
            "role": .string(task.role),
            "runId": .string(task.runId ?? ""),
        ]

        /// The role's own frames (start, completion, error): a workflow node has none, the runner reports it.
        func announce(_ frameType: String, _ data: [String: JSONValue]) async throws {
            guard workflowNode == nil else { return }
            pending.append(try await emit(frameType, data, id: eventIDs.once(frameType, channel: conversation)))
        }

        try await announce(
            FrameType.agentStart,
            merge(
                ids,
                AgentEvent.fields(
                    type: AgentEvent.agentStart, source: task.role,
                    payload: [
                        "status": "started", "task_description": .string(task.responsibility ?? "answer the message"),
                    ])))

        let request = ProviderRequest(
            role: task.role, responsibility: task.responsibility, systemPrompt: task.systemPrompt,
            userMessage: task.prompt,
            contributions: task.contributions ?? [], history: task.history ?? [], answerSoFar: recorded.text)
        var content = ""
        /// Chunks sent; and the characters sent, the next chunk's `position` (seed 000: a character offset).
        var chunkCount = 0
        var offset = 0
        var responding = false
        /// When the engine produced its first token (µs since the epoch): the first chunk carries it, so
        /// a client can time the platform's own share (the orchestration-overhead benchmark).
        var firstTokenAt: Int64?
        func respond(reason: String) async throws {
            guard !responding else { return }
            responding = true
            if collaborative {
                try await transition(
                    roles, to: [.responding], reason: reason, thinkingSince: task.dispatchedAt, into: &pending)
            }
            if isFinal {
                var start: [String: JSONValue] = [
                    "messageId": .string(task.replyMessageId), "conversationId": .string(task.conversationId),
                    "role": .string(task.role), "inReplyTo": .string(task.inReplyTo),
                ]
                if let estimated = provider.estimatedLength(of: request) {
                    start["estimatedLength"] = .number(Double(estimated))
                }
                pending.append(
                    try await emit(
                        FrameType.messageStreamStart, start,
                        id: eventIDs.once(FrameType.messageStreamStart, channel: conversation)))
            }
        }
        /// Sends a chunk already recorded. `isLast` marks the agent's last chunk of a complete answer (seed
        /// 001's `is_complete`).
        func emitChunk(_ chunk: String, isLast: Bool) async throws {
            try await respond(reason: "first tokens")
            content += chunk
            if let workflowNode {
                pending.append(
                    try await progress(
                        workflowNode, chunk: chunk, position: chunkCount, text: content,
                        id: eventIDs.chunk(chunkCount, channel: .workflow(workflowNode.runId))))
                chunkCount += 1
                return
            }
            var data = merge(
                ids,
                AgentEvent.fields(
                    type: AgentEvent.llmChunk, source: task.role,
                    payload: ["content": .string(chunk), "content_type": "text", "is_complete": .bool(isLast)]))
            data["chunk"] = .string(chunk)
            data["position"] = .number(Double(offset))
            if chunkCount == 0, let firstTokenAt { data["firstTokenAt"] = .number(Double(firstTokenAt)) }
            pending.append(
                try await emit(
                    isFinal ? FrameType.messageStreamChunk : FrameType.agentChunk, JSONValue.object(data),
                    channel: conversation,
                    id: eventIDs.chunk(chunkCount, channel: conversation)))
            chunkCount += 1
            offset += ChatCentreDialect.length(chunk)
        }
        /// Records chunks before sending them, so a successor resumes with exactly what may have been shown.
        func send(_ chunks: [String], complete: Bool = false) async throws {
            try await lease.record(chunks, complete: complete)
            for (index, chunk) in chunks.enumerated() {
                try await emitChunk(chunk, isLast: complete && index == chunks.count - 1)
            }
        }

        // An earlier attempt's chunks, again under their ids: the notifier drops those the client had.
        for (index, chunk) in recorded.chunks.enumerated() {
            try await emitChunk(chunk, isLast: recorded.generated && index == recorded.chunks.count - 1)
        }

        var chunker = Chunker()
        var failure: ProviderError?
        var stopped = false
        let (pieces, continuation) = AsyncStream.makeStream(of: Piece.self)
        let registration = task.runId.map { runID in
            (runID, stops.register(runID: runID) { continuation.yield(.stopped) })
        }
        defer { if let (runID, id) = registration { stops.unregister(runID: runID, id: id) } }
        // Stopped before it started (the stop message came before this task): no model call at all.
        var stoppedEarly = false
        if let runID = task.runId {
            stoppedEarly = try await RunControl(redis: context.redis).isStopped(runID: runID)
            if stoppedEarly { continuation.yield(.stopped) }
        }
        // The answer was complete before the crash: nothing to ask the model.
        if recorded.generated && !stoppedEarly { continuation.yield(.end) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            if !stoppedEarly && !recorded.generated {
                group.addTask {
                    do {
                        try await provider.stream(request) { continuation.yield(.delta($0)) }
                        continuation.yield(.end)
                    } catch let error as ProviderError {
                        continuation.yield(.failure(error))
                    } catch {
                        continuation.yield(.failure(ProviderError(.disconnected, "\(error)")))
                    }
                }
            }
            // Drives the chunker's time rule while the model is silent, and bounds a model's whole
            // answer (retries included): the client's deadline only covers the response head.
            let limit = task.provider.flatMap { $0.kind == "offline" ? nil : ($0.timeoutSeconds ?? 120) }
            let deadline = limit.map { ContinuousClock.now + .milliseconds(Int64($0 * 1000)) }
            group.addTask {
                while !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(20))
                    if let deadline, let limit, ContinuousClock.now >= deadline {
                        continuation.yield(.failure(ProviderError(.timeout, "no complete answer within \(limit) s")))
                        return
                    }
                    continuation.yield(.tick)
                }
            }
            loop: for await piece in pieces {
                switch piece {
                case .delta(let text):
                    if firstTokenAt == nil { firstTokenAt = Clock.epochMicroseconds() }
                    try await send(chunker.append(text, now: .now))
                case .tick:
                    try await send(chunker.tick(now: .now))
                case .end:
                    break loop
                case .failure(let error):
                    failure = error
                    break loop
                case .stopped:
                    stopped = true
                    break loop
                }
            }
            // Cancels the provider's request at once (a stop must end generation, not just hide it).
            group.cancelAll()
        }
        // The last chunk of a complete answer says so; when the model's end came after the last text
        // was sent, an empty chunk carries it (a workflow node's runner reports its own end).
        let rest = chunker.finish()
        let complete = !stopped && failure == nil
        if !recorded.generated {
            try await send(complete && rest.isEmpty && workflowNode == nil ? [""] : rest, complete: complete)
        }

        let durationMs = Int((ContinuousClock.now - started) / .milliseconds(1))
        if stopped {
            Counter(label: "sb_agent_tasks_stopped_total").increment()
            // THINKING → RESPONDING → (orchestrator) IDLE: a stop is not an error.
            if collaborative && !responding {
                try await transition(
                    roles, to: [.responding], reason: "stopped", thinkingSince: task.dispatchedAt, into: &pending)
            }
            if isFinal && responding {
                pending.append(
                    try await end(
                        task, content: content, chunks: chunkCount, durationMs: durationMs, kind: provider.kind,
                        error: nil, stopped: true))
            }
            try await announce(
                FrameType.agentComplete,
                merge(
                    ids,
                    AgentEvent.fields(
                        type: AgentEvent.agentComplete, source: task.role,
                        payload: [
                            "status": "stopped", "summary": .string(String(content.prefix(120))),
                            "chunks": .number(Double(chunkCount)), "durationMs": .number(Double(durationMs)),
                        ])))
        } else if let failure {
            Counter(label: "sb_agent_provider_failures_total", dimensions: [("provider", provider.kind)]).increment()
            context.logger.warning(
                "role failed",
                metadata: [
                    "role.name": "\(task.role)", "error": "\(failure)", "conversation.id": "\(task.conversationId)",
                ])
            if collaborative {
                try await transition(roles, to: [.error], reason: "\(failure)", thinkingSince: nil, into: &pending)
            }
            if isFinal && responding {
                pending.append(
                    try await end(
                        task, content: content, chunks: chunkCount, durationMs: durationMs, kind: provider.kind,
                        error: failure))
            }
            let payload = AgentEvent.ErrorPayload(
                error: failure.message, errorType: failure.code.description,
                context: .init(
                    agentSource: task.role, conversationId: task.conversationId, runId: task.runId,
                    provider: provider.kind),
                retryCount: failure.retries)
            try await announce(
                FrameType.agentError,
                merge(
                    ids,
                    AgentEvent.fields(
                        type: AgentEvent.error, source: task.role, payload: try JSONValue(encoding: payload))))
        } else {
            try await respond(reason: "answer ready")
            if isFinal {
                pending.append(
                    try await end(
                        task, content: content, chunks: chunkCount, durationMs: durationMs, kind: provider.kind,
                        error: nil))
            }
            try await announce(
                FrameType.agentComplete,
                merge(
                    ids,
                    AgentEvent.fields(
                        type: AgentEvent.agentComplete, source: task.role,
                        payload: [
                            "status": "completed", "summary": .string(String(content.prefix(120))),
                            "chunks": .number(Double(chunkCount)), "durationMs": .number(Double(durationMs)),
                        ])))
        }
        for future in pending { _ = try await future.report() }
        if let runId = task.runId {
            let result = AgentTaskCompleted(
                runId: runId, taskId: task.taskId, conversationId: task.conversationId, role: task.role,
                status: stopped
                    ? AgentTaskCompleted.stopped
                    : (failure == nil ? AgentTaskCompleted.completed : AgentTaskCompleted.failed),
                content: content,
                error: failure.map { "\($0)" }, chunks: chunkCount, startedAt: startedAt,
                finishedAt: Clock.epochMilliseconds())
            try await context.publish(
                Envelope(
                    id: eventIDs.result, routingKey: task.conversationId,
                    traceparent: TraceContext.child(of: envelope.traceparent),
                    source: context.source, payload: result),
                to: task.replyTopic)
        }
        // Only now: a crash before this leaves the task to be resumed, and its result is sent then.
        try await lease.finish()
        Counter(label: "sb_agent_tasks_completed_total").increment()
    }

    private func end(
        _ task: AgentTaskRequested, content: String, chunks: Int, durationMs: Int, kind: String, error: ProviderError?,
        stopped: Bool = false
    ) async throws -> DeliveryFuture {
        var metadata: [String: JSONValue] = [
            "chunks": .number(Double(chunks)), "durationMs": .number(Double(durationMs)), "engine": .string(kind),
        ]
        if let error {
            metadata["status"] = "failed"
            metadata["error"] = .string(error.message)
        }
        if stopped { metadata["status"] = "stopped" }
        let conversation = SwitchboardContracts.Channel.conversation(task.conversationId)
        return try await emit(
            FrameType.messageStreamEnd,
            [
                "messageId": .string(task.replyMessageId),
                "finalMessage": [
                    "id": .string(task.replyMessageId), "conversationId": .string(task.conversationId),
                    "role": .string(task.role), "content": .string(content),
                    "createdAt": .number(Double(Clock.epochMilliseconds())),
                ],
                "metadata": .object(metadata),
            ],
            id: TaskEventIDs(taskID: task.taskId).once(FrameType.messageStreamEnd, channel: conversation))
    }

    /// Moves the role in Redis and announces the legal steps on the conversation and role channels.
    private func transition(
        _ roles: RoleStateStore, to path: [RoleStatus], reason: String, thinkingSince: Int64?,
        into pending: inout [DeliveryFuture]
    ) async throws {
        let task = envelope.payload
        let eventIDs = TaskEventIDs(taskID: task.taskId)
        let outcome = try await roles.advance(conversation: task.conversationId, role: task.role, path: path)
        let announcer = RoleAnnouncer(conversation: task.conversationId, role: task.role)
        for step in outcome.applied {
            let actual = thinkingSince.map { max(Clock.epochMilliseconds() - $0, 0) } ?? 0
            for frame in announcer.frames(for: step, reason: reason, thinking: .end(actualMs: actual)) {
                for channel in announcer.channels {
                    pending.append(
                        try await emit(
                            frame.frameType, try frame.data(), channel: channel,
                            id: eventIDs.roleStep(frame.frameType, to: step.to, channel: channel)))
                }
            }
        }
    }

    /// One chunk of a workflow llm node: the delta and the text so far (a client that joins late, or
    /// misses a frame, still shows the whole partial output), keyed by the run like its other events.
    private func progress(_ node: WorkflowNodeTask, chunk: String, position: Int, text: String, id: UUID) async throws
        -> DeliveryFuture
    {
        let data: JSONValue = [
            "workflow_id": .string(node.runId), "node_id": .string(node.nodeId), "status": "running",
            "delta": .string(chunk), "position": .number(Double(position)), "partial_outputs": ["text": .string(text)],
            "timestamp": .string(WorkflowNodeTask.timestamp(Clock.epochMilliseconds())),
        ]
        let event = ClientEvent(channel: .workflow(node.runId), frameType: WorkflowNodeTask.progressFrame, data: data)
        let outgoing = Envelope(
            id: id, routingKey: node.runId, traceparent: TraceContext.child(of: envelope.traceparent),
            source: context.source,
            payload: event)
        return try await context.producer.enqueue(EventBus.message(outgoing, topic: Topics.clientEvents))
    }

    private func merge(_ base: [String: JSONValue], _ extra: [String: JSONValue]) -> [String: JSONValue] {
        base.merging(extra) { _, new in new }
    }

    private func emit(_ frameType: String, _ data: [String: JSONValue], id: UUID) async throws -> DeliveryFuture {
        try await emit(
            frameType, JSONValue.object(data), channel: .conversation(envelope.payload.conversationId), id: id)
    }

    /// `id` comes from `TaskEventIDs`: the same event of a redelivered task has the same id.
    private func emit(_ frameType: String, _ data: JSONValue, channel: SwitchboardContracts.Channel, id: UUID)
        async throws -> DeliveryFuture
    {
        let event = ClientEvent(channel: channel, frameType: frameType, data: data)
        let outgoing = Envelope(
            id: id, routingKey: envelope.payload.conversationId,
            traceparent: TraceContext.child(of: envelope.traceparent),
            source: context.source, payload: event)
        return try await context.producer.enqueue(EventBus.message(outgoing, topic: Topics.clientEvents))
    }
}
