import DequeModule
import Logging
import Metrics
import Synchronization

/// A member of a consumer group. Each partition assigned to it arrives on `partitions` as an
/// AsyncSequence of its messages, in order, and finishes when the partition is revoked; the
/// sequence of partitions finishes when the consumer stops.
///
/// Nothing is committed until `markProcessed` says a message was handled (at-least-once); a
/// partition whose handler falls behind is paused at the broker instead of buffering without bound.
/// Every librdkafka call of a consumer runs on its polling thread (pause and resume wait for
/// librdkafka's partition threads: never on the cooperative pool, never under a lock).
public final class KafkaConsumer: Sendable {
    private struct State {
        var buffers: [TopicPartition: PartitionBuffer] = [:]
        var hasJoined = false
        var stopDelivering = false
        var closeRequested = false
        /// The group forgot this member (a broker restarted empty) and has not given it a partition
        /// since: see `rejoinIfAssignmentWasLost`.
        var lostAssignment: LostAssignment?
        var rejoinRequested = false
    }

    /// A lost assignment not yet made good, and the subscriptions renewed for it so far.
    struct LostAssignment {
        static let settleTime: Duration = .seconds(10)
        static let maximumRejoins = 5

        var since: ContinuousClock.Instant
        var lastRejoin: ContinuousClock.Instant?
        var rejoins = 0

        /// Whether to subscribe again now: once the group had time to settle after the loss (or after
        /// the last attempt), a few times at most (a member of a group with more members than
        /// partitions may rightly stay without one).
        mutating func rejoinNow(at now: ContinuousClock.Instant) -> Bool {
            guard rejoins < Self.maximumRejoins, now - (lastRejoin ?? since) >= Self.settleTime else { return false }
            rejoins += 1
            lastRejoin = now
            return true
        }
    }

    private let client: RDKafkaClient
    private let configuration: KafkaConsumerConfiguration
    private let topics: [String]
    public var groupID: String { configuration.groupID }
    private let state = Mutex(State())
    private let pollThread = Mutex<DedicatedThread?>(nil)
    private let partitionContinuation: AsyncStream<KafkaPartitionStream>.Continuation
    private let logger: Logger
    private let pausedGauge: Meter
    private let revokedCounter: Counter

    /// One element per partition assignment.
    public let partitions: AsyncStream<KafkaPartitionStream>

    public init(configuration: KafkaConsumerConfiguration, topics: [String], logger: Logger) throws {
        var logger = logger
        logger[metadataKey: "kafka.group"] = "\(configuration.groupID)"
        self.logger = logger
        self.configuration = configuration
        self.topics = topics
        self.client = try RDKafkaClient.make(kind: .consumer, properties: configuration.properties, logger: logger)
        (partitions, partitionContinuation) = AsyncStream.makeStream(of: KafkaPartitionStream.self)
        pausedGauge = KafkaMetrics.pausedPartitions(group: configuration.groupID)
        revokedCounter = KafkaMetrics.partitionsRevoked(group: configuration.groupID)
        do {
            try client.subscribe(topics: topics)
        } catch {
            client.destroy()
            throw error
        }
        let thread = DedicatedThread(name: "kafka-consumer-poll") { [self] in pollLoop() }
        pollThread.withLock { $0 = thread }
    }

    /// True while the group has this member assigned its partitions (possibly none, when the group has
    /// more members than partitions): from an assignment to the next revocation. Readiness probes use it.
    public var hasJoinedGroup: Bool { state.withLock { $0.hasJoined } }

    public var assignedPartitions: [TopicPartition] {
        state.withLock { Array($0.buffers.keys) }.sorted { ($0.topic, $0.partition) < ($1.topic, $1.partition) }
    }

    /// Records that `message` and everything before it on its partition were handled; the offset is
    /// committed with the next auto-commit or at close.
    public func markProcessed(_ message: KafkaConsumerMessage) throws {
        try client.storeOffset(message.topicPartition, nextOffset: message.offset + 1)
    }

    /// Stores `nextOffset` as the partition's position: every message before it is done.
    public func markProcessed(_ partition: TopicPartition, nextOffset: Int64) throws {
        try client.storeOffset(partition, nextOffset: nextOffset)
    }

    /// Stops handing out messages: every partition sequence finishes after its buffered messages are
    /// dropped (they are re-read by whoever owns the partition next). Call before `close`.
    public func stopDelivering() {
        let buffers = state.withLock { state in
            state.stopDelivering = true
            return Array(state.buffers.values)
        }
        buffers.forEach { $0.finish() }
        partitionContinuation.finish()
    }

    /// Subscribes again if the group forgot this member and has not given it a partition since. For a
    /// broker that came back without its topics (Tansu restarted empty): a member that rejoined before
    /// the topics were created again stays assigned no partition even once they exist (librdkafka 2.8.0
    /// against Tansu, also with confluent-kafka's Python client; a new subscription sees them).
    /// `TopicKeeper` calls it at each check that finds every topic.
    public func rejoinIfAssignmentWasLost() {
        state.withLock { state in
            if state.lostAssignment?.rejoinNow(at: .now) == true { state.rejoinRequested = true }
        }
    }

    /// Commits what was marked processed, leaves the group and releases the client.
    public func close() async {
        stopDelivering()
        state.withLock { $0.closeRequested = true }
        await pollThread.withLock { $0 }?.join()
    }

    // MARK: Polling thread

    /// How long a close waits for a join in progress to finish. Leaving in the middle of a join
    /// breaks the group for good on Tansu (no later member is ever assigned partitions), so a service
    /// stopped right after it started first finishes joining, then leaves.
    static let joinGraceOnClose: Duration = .seconds(15)

    private func pollLoop() {
        var closing = false
        var closeRequestedAt: ContinuousClock.Instant?
        while true {
            if !closing && state.withLock({ $0.closeRequested }) {
                let now = ContinuousClock.now
                if closeRequestedAt == nil { closeRequestedAt = now }
                if !hasJoinedGroup && now - closeRequestedAt! < Self.joinGraceOnClose {
                    if let event = client.poll(timeoutMilliseconds: 50) { handle(event) }
                    continue
                }
                closing = true
                if let error = client.commitStoredOffsets() {
                    logger.warning("final commit failed", metadata: ["error": "\(error)"])
                }
                do {
                    try client.beginClose()
                } catch {
                    // Not leaving the group politely: destroying the handle still closes it.
                    logger.warning("consumer close failed", metadata: ["error": "\(error)"])
                    break
                }
            }
            if closing && client.isClosed { break }
            if let event = client.poll(timeoutMilliseconds: 50) { handle(event) }
            applyFlowActions()
            if !closing { rejoinIfRequested() }
        }
        client.destroy()
        logger.debug("consumer closed")
    }

    private func rejoinIfRequested() {
        guard
            state.withLock({ state in
                defer { state.rejoinRequested = false }; return state.rejoinRequested
            })
        else { return }
        do {
            try client.unsubscribe()
            try client.subscribe(topics: topics)
            logger.warning("subscribed again: the group had lost this member", metadata: ["kafka.topics": "\(topics)"])
        } catch {
            logger.error("subscribing again failed", metadata: ["error": "\(error)"])
        }
    }

    private func handle(_ event: RDKafkaClient.Event) {
        switch event {
        case .messages(let messages):
            deliver(messages)
        case .assign(let assigned):
            let (newStreams, stopped) = state.withLock { state -> ([KafkaPartitionStream], Bool) in
                state.hasJoined = true
                if !assigned.isEmpty { state.lostAssignment = nil }
                guard !state.stopDelivering else { return ([], true) }
                var streams: [KafkaPartitionStream] = []
                for partition in assigned where state.buffers[partition] == nil {
                    let buffer = PartitionBuffer(
                        partition: partition, highWatermark: configuration.maxBufferedMessagesPerPartition)
                    state.buffers[partition] = buffer
                    streams.append(KafkaPartitionStream(partition: partition, buffer: buffer, consumer: self))
                }
                return (streams, false)
            }
            do {
                try client.assign(assigned)
            } catch {
                logger.error(
                    "assign failed",
                    metadata: ["kafka.partitions": "\(assigned.map(\.description))", "error": "\(error)"])
            }
            logger.info("partitions assigned", metadata: ["kafka.partitions": "\(assigned.map(\.description))"])
            if !stopped { newStreams.forEach { partitionContinuation.yield($0) } }
        case .revoke(let revoked):
            // Not a member with an assignment again until the next one (the group lost this member, or
            // rebalances): readiness must not stay true through a broker that forgot the group.
            let lost = client.assignmentLost
            let buffers = state.withLock { state in
                state.hasJoined = false
                if lost && state.lostAssignment == nil { state.lostAssignment = LostAssignment(since: .now) }
                return revoked.compactMap { state.buffers.removeValue(forKey: $0) }
            }
            buffers.forEach { $0.finish() }
            revokedCounter.increment(by: Int64(revoked.count))
            if let error = client.commitStoredOffsets() {
                logger.warning("commit before revoke failed", metadata: ["error": "\(error)"])
            }
            do {
                try client.unassign(revoked)
            } catch {
                logger.error(
                    "unassign failed",
                    metadata: ["kafka.partitions": "\(revoked.map(\.description))", "error": "\(error)"])
            }
            logger.info("partitions revoked", metadata: ["kafka.partitions": "\(revoked.map(\.description))"])
        case .fetchError(let error):
            logger.warning("fetch error", metadata: ["error": "\(error)"])
        case .error(let error, let fatal):
            if fatal {
                logger.critical("fatal consumer error", metadata: ["error": "\(error)"])
            } else {
                logger.debug("consumer error", metadata: ["error": "\(error)"])
            }
        case .log(let level, let facility, let message):
            logLibrdkafka(logger, level: level, facility: facility, message: message)
        case .offsetCommit(let error):
            if let error { logger.debug("offset commit failed", metadata: ["error": "\(error)"]) }
        case .deliveryReports, .statistics:
            break
        }
    }

    private func deliver(_ messages: [KafkaConsumerMessage]) {
        var index = 0
        while index < messages.count {
            // Messages of one fetch event come grouped by partition.
            let partition = messages[index].topicPartition
            var end = index
            while end < messages.count && messages[end].topicPartition == partition { end += 1 }
            state.withLock { $0.buffers[partition] }?.push(messages[index..<end])
            index = end
        }
    }

}

extension KafkaConsumer {
    /// Carries out what the partition buffers decided since the last poll (on the polling thread).
    private func applyFlowActions() {
        let buffers = state.withLock { Array($0.buffers.values) }
        for buffer in buffers {
            guard let action = buffer.takeFlowAction() else { continue }
            do {
                switch action {
                case .pause:
                    try client.pause([buffer.partition])
                    pausedGauge.increment()
                case .resume:
                    try client.resume([buffer.partition])
                    pausedGauge.decrement()
                }
            } catch {
                // A partition just revoked: its buffer goes with it.
                logger.warning(
                    "\(action) failed", metadata: ["kafka.partition": "\(buffer.partition)", "error": "\(error)"])
            }
        }
    }
}

/// Whether a partition's fetching must stop or go on.
enum FlowAction: Sendable, Equatable, CustomStringConvertible {
    case pause, resume

    var description: String { self == .pause ? "pause" : "resume" }
}

/// The messages of one assigned partition, in offset order. Finishes when the partition is revoked or
/// the consumer stops.
public struct KafkaPartitionStream: AsyncSequence, Sendable {
    public typealias Element = KafkaConsumerMessage
    public let partition: TopicPartition
    fileprivate let buffer: PartitionBuffer
    fileprivate let consumer: KafkaConsumer

    public struct AsyncIterator: AsyncIteratorProtocol {
        fileprivate let buffer: PartitionBuffer
        fileprivate let consumer: KafkaConsumer

        public mutating func next() async -> KafkaConsumerMessage? {
            await buffer.next()
        }

        /// Waits for the next message, then takes those already buffered behind it, `maximum` in all;
        /// empty once the partition was revoked or the consumer stopped. For handlers that write a
        /// batch at once.
        public mutating func next(upTo maximum: Int) async -> [KafkaConsumerMessage] {
            guard let first = await buffer.next() else { return [] }
            return [first] + buffer.take(maximum - 1)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(buffer: buffer, consumer: consumer) }
}

/// The bounded hand-over between the polling thread and one partition's handler task: above the high
/// watermark the partition is to be paused at the broker, and resumed once the handler drained half
/// of it. The buffer only decides; the polling thread takes the decision (`takeFlowAction`) and calls
/// librdkafka, so a handler's `next()` never waits for librdkafka.
final class PartitionBuffer: Sendable {
    private struct State {
        var messages = Deque<KafkaConsumerMessage>()
        var waiter: CheckedContinuation<KafkaConsumerMessage?, Never>?
        /// What the buffer decided, and what the polling thread last carried out.
        var paused = false
        var pausedAtBroker = false
        var finished = false
    }

    let partition: TopicPartition
    private let highWatermark: Int
    private let state = Mutex(State())

    init(partition: TopicPartition, highWatermark: Int) {
        self.partition = partition
        self.highWatermark = max(1, highWatermark)
    }

    /// The pause or resume the broker has yet to hear of, if any (a pause undone before the polling
    /// thread came to it is no action at all). For the polling thread.
    func takeFlowAction() -> FlowAction? {
        state.withLock { state in
            guard !state.finished, state.paused != state.pausedAtBroker else { return nil }
            state.pausedAtBroker = state.paused
            return state.paused ? .pause : .resume
        }
    }

    func push(_ messages: ArraySlice<KafkaConsumerMessage>) {
        var messages = messages
        let handOver = state.withLock {
            state -> (CheckedContinuation<KafkaConsumerMessage?, Never>, KafkaConsumerMessage)? in
            guard !state.finished else { return nil }
            var handOver: (CheckedContinuation<KafkaConsumerMessage?, Never>, KafkaConsumerMessage)?
            if let waiter = state.waiter, let head = messages.popFirst() {
                handOver = (waiter, head)
                state.waiter = nil
            }
            for message in messages { state.messages.append(message) }
            if !state.paused && state.messages.count >= highWatermark { state.paused = true }
            return handOver
        }
        if let (waiter, message) = handOver { waiter.resume(returning: message) }
    }

    /// Takes the first buffered message; resumes the partition when the buffer has drained enough.
    private func popLocked(_ state: inout State) -> KafkaConsumerMessage? {
        guard let message = state.messages.popFirst() else { return nil }
        if state.paused && state.messages.count <= highWatermark / 2 { state.paused = false }
        return message
    }

    /// The next message, or nil once the partition was revoked or the consumer stopped.
    func next() async -> KafkaConsumerMessage? {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> KafkaConsumerMessage?? in
                if let message = popLocked(&state) { return .some(message) }
                if state.finished { return .some(nil) }
                state.waiter = continuation
                return .none
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Up to `count` buffered messages, without waiting.
    func take(_ count: Int) -> [KafkaConsumerMessage] {
        guard count > 0 else { return [] }
        return state.withLock { state in
            var taken: [KafkaConsumerMessage] = []
            while taken.count < count, let message = popLocked(&state) { taken.append(message) }
            return taken
        }
    }

    func finish() {
        let waiter = state.withLock { state in
            state.finished = true
            state.messages = Deque()
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }
}
