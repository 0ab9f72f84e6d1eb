import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime
import SwitchboardWorkflow

/// Reads the runner's partitions. One loop per partition applies its messages in order: a run request
/// starts the run (in a child task, so the partition moves on to the run's controls), a control or an
/// answer goes to the run it names at once. A run request's offset is committed only when its run
/// finished, so a run survives the death of its runner: the next owner of the partition reads the
/// request again and resumes the run from its checkpoint.
struct CommandLoop: Service {
    let consumer: KafkaConsumer
    let context: ServiceContext
    let executor: NodeExecutor
    let store: WorkflowRunStore
    let registry = RunRegistry()

    func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await partition in consumer.partitions {
                    group.addTask { await consume(partition) }
                }
            }
        } onGracefulShutdown: {
            consumer.stopDelivering()
        }
        await consumer.close()
    }

    private func consume(_ partition: KafkaPartitionStream) async {
        let offsets = OffsetWindow()
        var started: [RunHandle] = []
        await withDiscardingTaskGroup { group in
            for await message in partition {
                offsets.begin(message.offset)
                if message.topic == Topics.agentResults.name {
                    await storeAgentResult(message)
                    commit(offsets.finish(message.offset), message.topicPartition)
                    continue
                }
                do {
                    let header = try EnvelopeCodec.header(from: message.value)
                    switch header.type {
                    case WorkflowRunRequested.eventType:
                        let envelope = try EnvelopeCodec.decode(WorkflowRunRequested.self, from: message.value)
                        let runID = envelope.payload.runId
                        guard registry.handle(runID) == nil else { break }  // the same request twice
                        let handle = RunHandle(runID: runID)
                        registry.add(handle)
                        started.append(handle)
                        group.addTask {
                            let finished = await RunExecution(
                                context: context, executor: executor, store: store, handle: handle, request: envelope
                            ).execute()
                            registry.remove(handle)
                            // An abandoned run (partition lost, shutdown) keeps its request uncommitted.
                            if finished { commit(offsets.finish(message.offset), message.topicPartition) }
                        }
                        continue
                    case WorkflowControlRequested.eventType:
                        let envelope = try EnvelopeCodec.decode(WorkflowControlRequested.self, from: message.value)
                        if let handle = registry.handle(envelope.payload.runId) {
                            handle.send(.control(envelope.payload))
                        } else {
                            await answerNotRunning(runID: envelope.payload.runId, requestID: envelope.payload.requestId, action: envelope.payload.action)
                        }
                    case WorkflowInputProvided.eventType:
                        let envelope = try EnvelopeCodec.decode(WorkflowInputProvided.self, from: message.value)
                        if let handle = registry.handle(envelope.payload.runId) {
                            handle.send(.answer(envelope.payload))
                        } else {
                            await answerNotRunning(runID: envelope.payload.runId, requestID: envelope.payload.requestId, action: "provide_input")
                        }
                    default:
                        throw UnhandledEventError(type: header.type, service: context.configuration.service.rawValue)
                    }
                } catch {
                    await deadLetter(message, error: error)
                }
                commit(offsets.finish(message.offset), message.topicPartition)
            }
            // The partition was revoked or the runner is stopping: its runs continue elsewhere.
            for handle in started { handle.send(.abandon) }
        }
    }

    private func commit(_ next: Int64?, _ partition: TopicPartition) {
        guard let next else { return }
        do {
            try consumer.markProcessed(partition, nextOffset: next)
        } catch {
            context.logger.debug("offset not stored", metadata: ["kafka.partition": "\(partition)", "error": "\(error)"])
        }
    }

    /// A result for one of our llm nodes: kept in Redis, where the node (on whichever instance) finds it.
    private func storeAgentResult(_ message: KafkaConsumerMessage) async {
        guard let envelope = try? EnvelopeCodec.decode(AgentTaskCompleted.self, from: message.value),
            envelope.payload.isWorkflowTask
        else { return }
        let json = String(decoding: (try? JSONEncoder().encode(envelope.payload)) ?? Data(), as: UTF8.self)
        var attempt = 0
        while !Task.isCancelled {
            do {
                try await store.storeAgentResult(taskID: envelope.payload.taskId, json: json)
                return
            } catch {
                attempt += 1
                context.logger.warning("cannot store an agent result", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                try? await Task.sleep(for: .milliseconds(min(100 * attempt, 2000)))
            }
        }
    }

    /// A control for a run this instance does not run: finished, unknown, or never started.
    private func answerNotRunning(runID: String, requestID: String, action: String) async {
        let status = (try? await store.record(runID))?.status
        let message = status.map { "the run is \($0.rawValue), not running" } ?? "no such run"
        let data: JSONValue = [
            "workflow_id": .string(runID), "action": .string(action), "request_id": .string(requestID), "success": false,
            "status": .string(status?.rawValue ?? "unknown"),
            "error": ["code": .string(status == nil ? "not_found" : "not_running"), "message": .string(message)],
        ]
        let frame = action == "provide_input" ? WorkflowFrame.inputResponse : WorkflowFrame.controlResult
        let emitter = Emitter(context: context, runID: runID)
        try? await emitter.emit(frame, data, id: DeterministicID.uuid(runID, "control", requestID))
        try? await emitter.settle()
    }

    private func deadLetter(_ message: KafkaConsumerMessage, error: any Error) async {
        context.logger.error(
            "message dead-lettered", metadata: ["kafka.partition": "\(message.topicPartition)", "kafka.offset": "\(message.offset)", "error": "\(error)"])
        _ = try? await context.producer.send(DeadLetter.message(for: message, error: error, attempts: 1))
    }
}

/// The runs executing in this process, by id.
final class RunRegistry: Sendable {
    private let runs = Mutex<[String: RunHandle]>([:])
    private let gauge = Meter(label: "sb_workflow_runs_active")

    func add(_ handle: RunHandle) {
        runs.withLock { $0[handle.runID] = handle }
        gauge.increment()
    }

    func remove(_ handle: RunHandle) {
        if runs.withLock({ $0.removeValue(forKey: handle.runID) }) != nil { gauge.decrement() }
    }

    func handle(_ runID: String) -> RunHandle? { runs.withLock { $0[runID] } }
}

/// What reaches a running run from outside, in order.
enum RunSignal: Sendable {
    case nodeFinished(node: String, result: Result<NodeResult, NodeFailure>, startedAt: Int64)
    case control(WorkflowControlRequested)
    case answer(WorkflowInputProvided)
    /// Stop executing without recording an outcome: another runner takes the run over.
    case abandon
}

struct NodeFailure: Error, Sendable {
    var message: String
}

/// A run's signal queue, and the human_input nodes waiting for their answer.
final class RunHandle: Sendable {
    let runID: String
    let signals: AsyncStream<RunSignal>
    private let continuation: AsyncStream<RunSignal>.Continuation
    private let answers = Mutex<[String: AnswerSlot]>([:])

    private enum AnswerSlot {
        case waiting(CheckedContinuation<JSONValue, any Error>)
        case answered(JSONValue)
    }

    init(runID: String) {
        self.runID = runID
        let (signals, continuation) = AsyncStream.makeStream(of: RunSignal.self)
        self.signals = signals
        self.continuation = continuation
    }

    func send(_ signal: RunSignal) { continuation.yield(signal) }

    /// Waits for the answer to a human_input node (or takes the one that came first).
    func answer(for node: String) async throws -> JSONValue {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let ready = answers.withLock { answers -> JSONValue? in
                    if case .answered(let value)? = answers[node] {
                        answers[node] = nil
                        return value
                    }
                    answers[node] = .waiting(continuation)
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiting = answers.withLock { answers -> CheckedContinuation<JSONValue, any Error>? in
                guard case .waiting(let continuation)? = answers[node] else { return nil }
                answers[node] = nil
                return continuation
            }
            waiting?.resume(throwing: CancellationError())
        }
    }

    func provide(_ value: JSONValue, for node: String) {
        let waiting = answers.withLock { answers -> CheckedContinuation<JSONValue, any Error>? in
            if case .waiting(let continuation)? = answers[node] {
                answers[node] = nil
                return continuation
            }
            answers[node] = .answered(value)
            return nil
        }
        waiting?.resume(returning: value)
    }
}

/// Publishes a run's client events on its channel, with ids derived from what they say.
///
/// An event is handed to the producer and the run goes on: the events of one step share the
/// producer's batches instead of each waiting for the broker's acknowledgement (the idempotent
/// producer keeps their order on the run's partition). `settle()` waits for what is outstanding;
/// a run settles before its outcome counts, and an event whose delivery failed is sent again then.
final class Emitter: Sendable {
    let context: ServiceContext
    let runID: String
    private let outstanding = Mutex<[(message: KafkaOutgoingMessage, delivery: DeliveryFuture)]>([])
    /// A run that emits faster than the broker acknowledges waits once this many are outstanding.
    private static let outstandingLimit = 256

    init(context: ServiceContext, runID: String) {
        self.context = context
        self.runID = runID
    }

    func emit(_ frameType: String, _ data: JSONValue, id: UUID) async throws {
        let event = ClientEvent(channel: .workflow(runID), frameType: frameType, data: data)
        let envelope = Envelope(id: id, routingKey: runID, source: context.source, payload: event)
        let message = try EventBus.message(envelope, topic: Topics.clientEvents)
        let delivery = try await context.producer.enqueue(message)
        let count = outstanding.withLock {
            $0.append((message, delivery))
            return $0.count
        }
        if count > Self.outstandingLimit { try await settle() }
    }

    /// Returns once every event emitted so far is with the broker; a failed one is sent again
    /// (awaited, with retries), so nothing emitted is lost, at the price of its order.
    func settle() async throws {
        let waiting = outstanding.withLock { pending in
            defer { pending = [] }
            return pending
        }
        for (message, delivery) in waiting {
            do {
                _ = try await delivery.report()
            } catch {
                context.logger.warning("a workflow event's delivery failed; sending it again", metadata: ["error": "\(error)"])
                _ = try await retrying(context.logger) { [context] in try await context.producer.send(message) }
            }
        }
    }
}
