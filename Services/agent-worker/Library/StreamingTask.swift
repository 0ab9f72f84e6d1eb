import Foundation
import Logging
import Metrics
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTracing

/// Runs one role's answer: feeds its `ReplyNarrator` the model's text, the deadlines it asked for, the
/// model's end, a failure or a stop, and performs what the narrator decides. Frames are enqueued without
/// waiting for each acknowledgement (order is kept per key by the idempotent producer); the end waits
/// for all.
struct StreamingTask {
    let context: ServiceContext
    let providers: Providers
    let stops: RunStops
    let envelope: Envelope<AgentTaskRequested>

    /// Runs the task once: a redelivery of a finished task does nothing, one of a task cut short (its
    /// worker died) sends again what was recorded, under the same ids, and goes on from there.
    func run() async throws {
        let task = envelope.payload
        try await TaskJournal(redis: context.redis).withLease(taskID: task.taskId) { lease in
            let progress = try await lease.progress()
            if progress.done {
                // Its result is on the bus: the task came again (a redelivery, or an orchestrator that
                // dispatched it again after a crash) and must not be answered twice.
                AgentWorkerMetrics.tasksRedeliveredDone.increment()
                context.logger.info("task already done: not run again", metadata: ["task.id": "\(task.taskId)"])
                try await lease.release()
                return
            }
            if !progress.chunks.isEmpty || progress.generated {
                AgentWorkerMetrics.tasksRedeliveredResumed.increment()
                context.logger.info(
                    "resuming a task cut short",
                    metadata: ["task.id": "\(task.taskId)", "task.chunks": "\(progress.chunks.count)"])
            }
            try await run(lease: lease, progress: progress)
        }
    }

    private func run(lease: TaskJournal.Lease, progress recorded: TaskProgress) async throws {
        let task = envelope.payload
        let provider = DeviceToolProvider.wrap(
            providers.provider(for: task.provider), toolbox: task.deviceTools, caller: providers.deviceTools,
            offline: providers.offline)
        let request = ProviderRequest(
            role: task.role, responsibility: task.responsibility, systemPrompt: task.systemPrompt,
            userMessage: task.prompt,
            contributions: task.contributions ?? [], history: task.history ?? [], answerSoFar: recorded.text)
        let started = ContinuousClock.now
        let startedAt = Clock.epochMicroseconds()
        var sender = FrameSender(
            context: context, envelope: envelope, lease: lease, provider: provider, request: request,
            started: (started, startedAt))

        let (inputs, input) = AsyncStream.makeStream(of: ReplyNarrator.Input.self)
        let registration = task.runId.map { runID in
            (runID, stops.register(runID: runID) { input.yield(.stopped) })
        }
        defer { if let (runID, id) = registration { stops.unregister(runID: runID, id: id) } }
        // Stopped before it started (the stop message came before this task): no model call at all.
        var stoppedEarly = false
        if let runID = task.runId { stoppedEarly = try await RunControl(redis: context.redis).isStopped(runID: runID) }

        // Bounds a model's whole answer (retries included): the client's deadline only covers the response head.
        let timeLimit = task.provider.flatMap { $0.engine == .offline ? nil : ($0.timeoutSeconds ?? 120) }
        var narrator = ReplyNarrator(kind: ReplyNarrator.Kind(task), recorded: recorded, started: started)
        // The narrator's deadlines never move earlier, so one sleeper taking the newest after each wake
        // is enough (an early wake is harmless: the narrator asks again).
        let (wakes, wake) = AsyncStream.makeStream(
            of: ContinuousClock.Instant.self, bufferingPolicy: .bufferingNewest(1))
        var ending: ReplyNarrator.Ending?
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await deadline in wakes {
                    try await Task.sleep(until: deadline, clock: .continuous)
                    input.yield(.deadline)
                }
            }
            var effects = narrator.receive(.begin(stopped: stoppedEarly), now: .now)
            var pending = inputs.makeAsyncIterator()
            while true {
                for effect in effects {
                    switch effect {
                    case .callModel:
                        group.addTask {
                            do {
                                // The model call's span (OpenTelemetry's GenAI conventions), in the task's trace.
                                let model = task.provider?.model ?? task.provider?.kind ?? "offline"
                                try await Tracing.withSpan(
                                    "chat \(model)", kind: .client,
                                    attributes: [
                                        ("gen_ai.operation.name", "chat"), ("gen_ai.request.model", .string(model)),
                                        ("gen_ai.system", .string(task.provider?.kind ?? "offline")),
                                    ]
                                ) {
                                    try await provider.stream(request) { input.yield(.delta($0)) }
                                }
                                input.yield(.end)
                            } catch let error as ProviderError {
                                input.yield(.failure(error))
                            } catch {
                                input.yield(.failure(ProviderError(.disconnected, "\(error)")))
                            }
                        }
                        if let limit = timeLimit {
                            group.addTask {
                                try await Task.sleep(for: .milliseconds(Int64(limit * 1000)))
                                input.yield(.failure(ProviderError(.timeout, "no complete answer within \(limit) s")))
                            }
                        }
                    case .wake(let deadline):
                        wake.yield(deadline)
                    case .stopModel:
                        group.cancelAll()
                    case .finish(let end):
                        ending = end
                    default:
                        try await sender.perform(effect)
                    }
                }
                guard !narrator.isFinished else { break }
                // The inputs end only when this task is cancelled: the answer ends there, as the model's end.
                effects = narrator.receive(await pending.next() ?? .end, now: .now)
            }
            group.cancelAll()
        }
        guard let ending else { return }
        try await finish(ending, sender: sender, startedAt: startedAt / 1000)
        // Only now: a crash before this leaves the task to be resumed, and its result is sent then.
        try await lease.finish()
        AgentWorkerMetrics.tasksCompleted.increment()
    }

    /// Waits for every frame and sends the result to the task's requester.
    private func finish(_ ending: ReplyNarrator.Ending, sender: FrameSender, startedAt: Int64) async throws {
        let task = envelope.payload
        let status: String
        switch ending.outcome {
        case .completed:
            status = AgentTaskCompleted.completed
        case .stopped:
            status = AgentTaskCompleted.stopped
            AgentWorkerMetrics.tasksStopped.increment()
        case .failed(let failure):
            status = AgentTaskCompleted.failed
            AgentWorkerMetrics.providerFailures(provider: sender.provider.kind.rawValue).increment()
            context.logger.warning(
                "role failed",
                metadata: [
                    "role.name": "\(task.role)", "error": "\(failure)", "conversation.id": "\(task.conversationId)",
                ])
        }
        for future in sender.pending { _ = try await future.report() }
        guard let runId = task.runId else { return }
        var error: String?
        if case .failed(let failure) = ending.outcome { error = "\(failure)" }
        let result = AgentTaskCompleted(
            runId: runId, taskId: task.taskId, conversationId: task.conversationId, role: task.role, status: status,
            content: ending.content, error: error, chunks: ending.chunks, startedAt: startedAt,
            finishedAt: Clock.epochMilliseconds())
        try await context.publish(
            Envelope(
                id: TaskEventIDs(taskID: task.taskId).result, routingKey: task.conversationId,
                traceparent: Tracing.causeTraceparent(within: envelope.traceparent),
                source: context.source, payload: result),
            to: task.replyTopic)
    }
}
