import Logging
import Metrics
import ServiceLifecycle
import SwitchboardTracing
import Synchronization
import SwitchboardContracts

public struct RetryPolicy: Sendable {
    /// Attempts in all, the first included, before a message whose failure is `.transient` is dead-lettered.
    public var maxAttempts: Int = 5
    public var backoff = Backoff(initial: .milliseconds(50), maximum: .seconds(5))
    /// The pace of retries while a dependency is down (`.dependencyUnavailable`), which go on until it is back.
    public var dependencyBackoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))

    public init(
        maxAttempts: Int = 5, backoff: Backoff = Backoff(initial: .milliseconds(50), maximum: .seconds(5)),
        dependencyBackoff: Backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
    ) {
        self.maxAttempts = maxAttempts
        self.backoff = backoff
        self.dependencyBackoff = dependencyBackoff
    }
}

/// Runs a handler over every message of a consumer group: one task per partition keeps order per key,
/// partitions run concurrently. A failing message is treated by its `FailureKind`: poison goes to its
/// topic's dead-letter topic (`TopicSpec.deadLetter`) at once, a transient failure is retried with backoff
/// and then parked there, and while a dependency is down the partition waits and retries for as long as
/// it takes (nothing is parked for an outage). The offset of a message is stored only after it was
/// handled or dead-lettered; a message whose handler left work to complete later (`EventRouter`) counts
/// as handled once that work finished.
public struct KafkaEventProcessor: Service {
    public typealias Handler = @Sendable (KafkaConsumerMessage) async throws -> Void
    public typealias BatchHandler = @Sendable ([KafkaConsumerMessage]) async throws -> Void

    private let consumer: KafkaConsumer
    private let producer: KafkaProducer
    private let retryPolicy: RetryPolicy
    private let handler: EventRouter.Route
    private let logger: Logger
    private let concurrencyPerPartition: Int
    private let batchHandler: BatchHandler?
    private let maximumBatch: Int
    private let stopping = StopFlag()
    private let timeLag: ConsumerTimeLag

    /// Each message goes to the router's handler for its event type.
    ///
    /// With `concurrencyPerPartition` above 1, up to that many messages of a partition are handled at
    /// once (for work whose order does not matter, like the independent tasks of one conversation); the
    /// committed offset still only passes messages that are all done.
    public init(
        consumer: KafkaConsumer, deadLetterProducer: KafkaProducer, retryPolicy: RetryPolicy = RetryPolicy(),
        concurrencyPerPartition: Int = 1, logger: Logger, router: EventRouter
    ) {
        self.init(
            consumer: consumer, producer: deadLetterProducer, retryPolicy: retryPolicy,
            concurrencyPerPartition: concurrencyPerPartition, logger: logger, handler: router.route)
    }

    /// Every message goes to `handler`, whatever its type (a consumer of one kind of event).
    public init(
        consumer: KafkaConsumer, deadLetterProducer: KafkaProducer, retryPolicy: RetryPolicy = RetryPolicy(),
        concurrencyPerPartition: Int = 1, logger: Logger, handler: @escaping Handler
    ) {
        self.init(
            consumer: consumer, producer: deadLetterProducer, retryPolicy: retryPolicy,
            concurrencyPerPartition: concurrencyPerPartition, logger: logger, handler: Self.completing(handler))
    }

    /// Batches: what a partition has buffered (up to `maximumBatch` messages) goes to `batchHandler`
    /// at once, and the offset moves past the batch only once it returned. A batch that fails is
    /// handled again message by message through `handler` (retries, then dead-letter), so one bad
    /// message never holds the others; handlers must be idempotent, as redelivery already requires.
    public init(
        consumer: KafkaConsumer, deadLetterProducer: KafkaProducer, retryPolicy: RetryPolicy = RetryPolicy(),
        maximumBatch: Int, logger: Logger, batchHandler: @escaping BatchHandler, handler: @escaping Handler
    ) {
        self.init(
            consumer: consumer, producer: deadLetterProducer, retryPolicy: retryPolicy, concurrencyPerPartition: 1,
            logger: logger, handler: Self.completing(handler), batchHandler: batchHandler, maximumBatch: maximumBatch)
    }

    private init(
        consumer: KafkaConsumer, producer: KafkaProducer, retryPolicy: RetryPolicy, concurrencyPerPartition: Int,
        logger: Logger, handler: @escaping EventRouter.Route, batchHandler: BatchHandler? = nil, maximumBatch: Int = 1
    ) {
        self.consumer = consumer
        self.timeLag = ConsumerTimeLag(group: consumer.groupID)
        self.producer = producer
        self.retryPolicy = retryPolicy
        self.concurrencyPerPartition = max(1, concurrencyPerPartition)
        self.logger = logger
        self.handler = handler
        self.batchHandler = batchHandler
        self.maximumBatch = max(1, maximumBatch)
    }

    private static func completing(_ handler: @escaping Handler) -> EventRouter.Route {
        { message in
            try await handler(message)
            return .done
        }
    }

    public func run() async throws {
        let sampling = Task { await timeLag.sample() }
        defer { sampling.cancel() }
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await partition in consumer.partitions {
                    group.addTask {
                        if let batchHandler {
                            await processBatches(partition, batchHandler)
                        } else {
                            await processMessages(partition)
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            stopping.set()
            consumer.stopDelivering()
        }
        await consumer.close()
    }

    private func processBatches(_ partition: KafkaPartitionStream, _ batchHandler: BatchHandler) async {
        var messages = partition.makeAsyncIterator()
        while true {
            let batch = await messages.next(upTo: maximumBatch)
            guard let first = batch.first, let last = batch.last else { return }
            let inHand = timeLag.begin(first)
            defer { timeLag.end(inHand) }
            if logger.logLevel <= .debug {
                for message in batch { logHandling(message) }
            }
            do {
                try await BatchProcessSpans.run(batch, group: consumer.groupID) { try await batchHandler(batch) }
                for message in batch { KafkaMetrics.handled(message.topic).increment() }
                KafkaMetrics.batchSize.record(batch.count)
            } catch {
                KafkaMetrics.batchFallbacks(last.topic).increment()
                logger.debug(
                    "batch failed, handling its messages one by one",
                    metadata: ["error": "\(error)", "kafka.batch_size": "\(batch.count)"])
                for message in batch {
                    // Unprocessed (shutdown): stop here, so the rest is read again.
                    guard await process(message) != nil else { return }
                    commit(message.offset + 1, message.topicPartition)
                }
                continue
            }
            commit(last.offset + 1, last.topicPartition)
        }
    }

    /// One message after the other, or up to `concurrencyPerPartition` at once; the commit point is the
    /// lowest offset not yet done. When the partition ends (revoked, or the consumer stops), the work
    /// still completing later is abandoned and awaited: its messages stay uncommitted.
    private func processMessages(_ partition: KafkaPartitionStream) async {
        let slots = AsyncSlots(concurrencyPerPartition)
        let offsets = OffsetWindow()
        let completing = CompletingWork()
        await withDiscardingTaskGroup { group in
            for await message in partition {
                offsets.begin(message.offset)
                if concurrencyPerPartition == 1 {
                    switch await process(message) {
                    case .done?: offsets.finish(message.offset) { commit($0, message.topicPartition) }
                    case .later(let completion)?:
                        group.addTask { await complete(message, completion, offsets, completing) }
                    case nil: continue  // unprocessed (shutdown): it holds the commit point
                    }
                    continue
                }
                await slots.acquire()
                group.addTask {
                    let handling = await process(message)
                    slots.release()
                    switch handling {
                    case .done?: offsets.finish(message.offset) { commit($0, message.topicPartition) }
                    case .later(let completion)?: await complete(message, completion, offsets, completing)
                    case nil: return
                    }
                }
            }
            completing.abandonAll()
        }
    }

    private func complete(
        _ message: KafkaConsumerMessage, _ completion: LaterCompletion, _ offsets: OffsetWindow,
        _ completing: CompletingWork
    ) async {
        completing.add(message.offset, abandon: completion.abandon)
        let finished = await completion.work()
        completing.remove(message.offset)
        // Abandoned work leaves its message uncommitted, for the partition's next owner.
        if finished { offsets.finish(message.offset) { commit($0, message.topicPartition) } }
    }

    private func commit(_ nextOffset: Int64, _ partition: TopicPartition) {
        do {
            try consumer.markProcessed(partition, nextOffset: nextOffset)
        } catch {
            // The partition moved to another member, which reads the message again.
            logger.debug("offset not stored", metadata: ["kafka.partition": "\(partition)", "error": "\(error)"])
        }
    }

    /// Each message's place and key at debug level: what a lost or repeated message is traced by.
    private func logHandling(_ message: KafkaConsumerMessage) {
        logger.debug(
            "handling",
            metadata: [
                "kafka.partition": "\(message.topicPartition)", "kafka.offset": "\(message.offset)",
                "kafka.key": "\(message.keyString ?? "")",
            ])
    }

    /// Handles one message (retries, then dead-letter); nil when it must be read again.
    private func process(_ message: KafkaConsumerMessage) async -> Handling? {
        var attempt = 0
        // Only failures of the message's own count toward dead-lettering, not the waits of an outage.
        var transientFailures = 0
        var waitingSince: ContinuousClock.Instant?
        let inHand = timeLag.begin(message)
        defer {
            timeLag.end(inHand)
            if waitingSince != nil { DependencyWaits.shared.end() }
        }
        logHandling(message)
        while true {
            do {
                let handling = try await KafkaSpans.process(message, group: consumer.groupID) {
                    try await handler(message)
                }
                KafkaMetrics.handled(message.topic).increment()
                if let waitingSince {
                    logger.info(
                        "dependency back, partition resumed",
                        metadata: [
                            "kafka.partition": "\(message.topicPartition)",
                            "waited": "\(ContinuousClock.now - waitingSince)",
                        ])
                }
                return handling
            } catch {
                attempt += 1
                switch FailureClassifier.kind(of: error) {
                case .dependencyUnavailable:
                    // Waits for as long as the dependency is down: an outage must delay work, never drop it.
                    if waitingSince == nil {
                        waitingSince = .now
                        DependencyWaits.shared.begin()
                        logger.warning(
                            "a dependency is down; the partition waits for it",
                            metadata: [
                                "kafka.partition": "\(message.topicPartition)", "kafka.offset": "\(message.offset)",
                                "error": "\(error)",
                            ])
                    }
                    KafkaMetrics.dependencyRetries(message.topic).increment()
                    if stopping.isSet { return nil }
                    try? await Task.sleep(for: retryPolicy.dependencyBackoff.delay(attempt: min(attempt - 1, 10)))
                    if stopping.isSet { return nil }
                    continue
                case .transient where transientFailures + 1 < retryPolicy.maxAttempts:
                    transientFailures += 1
                    KafkaMetrics.handlerRetries(message.topic).increment()
                    logger.debug(
                        "handler failed, retrying",
                        metadata: ["kafka.offset": "\(message.offset)", "error": "\(error)", "attempt": "\(attempt)"])
                    try? await Task.sleep(for: retryPolicy.backoff.delay(attempt: transientFailures - 1))
                    continue
                case .transient, .poison:
                    // Not parked (the producer is gone): leave the offset alone so the message is read again.
                    return await deadLetter(message, error: error, attempts: attempt) ? .done : nil
                }
            }
        }
    }

    private func deadLetter(_ message: KafkaConsumerMessage, error: any Error, attempts: Int) async -> Bool {
        let outgoing = DeadLetter.message(for: message, error: error, attempts: attempts)
        logger.error(
            "message dead-lettered",
            metadata: [
                "kafka.partition": "\(message.topicPartition)", "kafka.offset": "\(message.offset)",
                "error": "\(error)",
            ])
        // Losing the message is worse than stalling its partition: keep trying until the broker has it.
        var failures = 0
        while true {
            do {
                _ = try await producer.send(outgoing)
                KafkaMetrics.deadLetters(message.topic).increment()
                return true
            } catch {
                failures += 1
                logger.warning("dead-letter send failed", metadata: ["error": "\(error)", "attempt": "\(failures)"])
                if (error as? KafkaError)?.code == .shutdown { return false }
                try? await Task.sleep(for: retryPolicy.backoff.delay(attempt: min(failures, 10)))
            }
        }
    }
}

/// Set once graceful shutdown begins, so retry loops give their message back instead of waiting on.
private final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// The work of a partition's messages that completes later, by offset, to abandon when the partition
/// ends; work that registers after that is abandoned at once.
private final class CompletingWork: Sendable {
    private struct State {
        var abandons: [Int64: @Sendable () -> Void] = [:]
        var ended = false
    }

    private let state = Mutex(State())

    func add(_ offset: Int64, abandon: @escaping @Sendable () -> Void) {
        let ended = state.withLock { state in
            if !state.ended { state.abandons[offset] = abandon }
            return state.ended
        }
        if ended { abandon() }
    }

    func remove(_ offset: Int64) { _ = state.withLock { $0.abandons.removeValue(forKey: offset) } }

    func abandonAll() {
        let abandons = state.withLock { state in
            state.ended = true
            return state.abandons.values
        }
        for abandon in abandons { abandon() }
    }
}

/// The offsets of a partition in flight; the commit point is the lowest one not yet done (messages
/// handled several at once, or whose work completes later, finish out of order).
final class OffsetWindow: Sendable {
    private struct State {
        var inFlight = Set<Int64>()
        var highestDone: Int64 = -1
        /// Where the partition stood when this window began: earlier offsets are not ours to commit.
        var committed: Int64?
    }

    private let state = Mutex(State())

    init() {}

    func begin(_ offset: Int64) {
        state.withLock { state in
            state.inFlight.insert(offset)
            if state.committed == nil { state.committed = offset }
        }
    }

    /// Marks `offset` done and, when the commit point moved forward, hands the next offset to commit to
    /// `store` while still holding the window's lock. librdkafka keeps the offset stored last, not the
    /// highest: two tasks finishing at once (work completing later, or several messages in flight) that
    /// stored outside the lock could store their points out of order and move the commit back (seen: a
    /// stopped member committed the control message's offset after the one past it).
    func finish(_ offset: Int64, store: (Int64) -> Void) {
        state.withLock { state in
            state.inFlight.remove(offset)
            state.highestDone = max(state.highestDone, offset)
            let next = state.inFlight.min() ?? (state.highestDone + 1)
            guard next > (state.committed ?? -1) else { return }
            state.committed = next
            store(next)
        }
    }
}

/// A counting semaphore for tasks: `acquire` suspends (never blocks a thread) until a slot is free.
final class AsyncSlots: Sendable {
    private struct State {
        var free: Int
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state: Mutex<State>

    init(_ count: Int) {
        state = Mutex(State(free: count))
    }

    func acquire() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Bool in
                if state.free > 0 {
                    state.free -= 1
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    func release() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.free += 1
                return nil
            }
            return state.waiters.removeFirst()
        }
        waiter?.resume()
    }
}
