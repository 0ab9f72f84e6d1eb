import Foundation
import Logging
import Metrics
import Synchronization

/// An idempotent producer (acks=all) whose sends can be awaited until the broker has the message.
public final class KafkaProducer: Sendable {
    private struct Pending {
        var future: DeliveryFuture
        /// The `Clients.generation` the message was handed to.
        var generation: Int
        var span: ProducerSpan?
    }

    private struct State {
        var nextToken: UInt = 1
        var pending: [UInt: Pending] = [:]
        var stopping = false
        var forgottenId = ForgottenProducerIdWatch()
    }

    /// The librdkafka producer in use, and the ones it replaced (`renew`) until they are released.
    private struct Clients {
        var current: RDKafkaClient
        /// Counts renewals: tells the current client's messages from those of replaced ones.
        var generation = 0
        var renewRequested: String?
        var retired: [(client: RDKafkaClient, at: ContinuousClock.Instant)] = []
    }

    private let clients: Mutex<Clients>
    private let properties: [String: String]
    private let state = Mutex(State())
    private let pollThread: Mutex<DedicatedThread?> = Mutex(nil)
    /// Admin, metadata and flush calls, which block.
    private let blocking = BlockingExecutor(label: "switchboard.kafka-producer")
    private let logger: Logger
    // Taken at start, so /metrics lists them (at 0) before the first message.
    private let sent = KafkaMetrics.produced
    private let failed = KafkaMetrics.produceFailures
    private let renewals = KafkaMetrics.producerRenewals

    public init(configuration: KafkaProducerConfiguration, logger: Logger) throws {
        var logger = logger
        logger[metadataKey: "kafka.client"] = "\(configuration.client.clientID)"
        self.logger = logger
        self.properties = configuration.properties
        self.clients = Mutex(
            Clients(
                current: try RDKafkaClient.make(kind: .producer, properties: configuration.properties, logger: logger)))
        let thread = DedicatedThread(name: "kafka-producer-poll") { [self] in pollLoop() }
        pollThread.withLock { $0 = thread }
    }

    /// Sends a message and returns once the broker acknowledged it (or throws its delivery error).
    /// A message whose producer was renewed before its delivery is sent again through the new one.
    public func send(_ message: KafkaOutgoingMessage) async throws -> DeliveryReport {
        var renewals = 0
        while true {
            do {
                return try await enqueue(message).report()
            } catch let error as KafkaError where error.code == .renewed && renewals < 3 {
                renewals += 1
            }
        }
    }

    /// Hands a message to librdkafka and returns at once with a future of its delivery report.
    /// Messages enqueued one after another by one caller keep that order on their partition (the
    /// producer is idempotent), so a stream of tokens need not wait for each acknowledgement.
    public func enqueue(_ message: KafkaOutgoingMessage) async throws -> DeliveryFuture {
        var attempt = 0
        while true {
            do {
                return try enqueueOnce(message)
            } catch let error as KafkaError where error.code == .queueFull && attempt < 2000 {
                // librdkafka's local queue is full: give the broker a moment to drain it.
                attempt += 1
                try await Task.sleep(for: .milliseconds(5))
            }
        }
    }

    private func enqueueOnce(_ message: KafkaOutgoingMessage) throws -> DeliveryFuture {
        let future = DeliveryFuture()
        var message = message
        let span = ProducerSpan(&message)
        // Under the clients' lock (taken before the state's, as in `renewIfRequested`): a message is
        // recorded with the generation of the client that really gets it.
        try clients.withLock { clients in
            let token: UInt = try state.withLock { state in
                guard !state.stopping else { throw KafkaError(.shutdown, "the producer is shutting down") }
                let token = state.nextToken
                state.nextToken &+= 1
                state.pending[token] = Pending(future: future, generation: clients.generation, span: span)
                return token
            }
            do {
                try clients.current.produce(
                    topic: message.topic, key: message.key, value: message.value, headers: message.headers,
                    token: token)
            } catch {
                _ = state.withLock { $0.pending.removeValue(forKey: token) }
                throw error
            }
        }
        return future
    }

    /// Creates the topics that are missing (Admin API); existing ones are left as they are.
    public func createTopics(_ topics: [(name: String, partitions: Int)], timeout: Duration = .seconds(10)) async throws
    {
        let client = clients.withLock { $0.current }
        let milliseconds = Int32(timeout.components.seconds * 1000)
        try await blocking.run {
            try client.createTopics(topics, timeoutMilliseconds: milliseconds)
        }
    }

    /// The partition count of each existing topic among `topics`.
    public func partitionCounts(of topics: [String]) async throws -> [String: Int] {
        let client = clients.withLock { $0.current }
        return try await blocking.run {
            try client.partitionCounts(of: topics, timeoutMilliseconds: 5000)
        }
    }

    /// Goes on with a new librdkafka producer, and so a new idempotent producer id; what the old one had
    /// not delivered fails at once with `.renewed` (retriable; `send` sends it again). For a broker
    /// that lost its state (Tansu restarted with its in-memory log): it answers the old producer id
    /// `UNKNOWN_PRODUCER_ID` however often librdkafka bumps its epoch, so every send would time out.
    /// Done on the poll thread, soon after this returns.
    public func renew(reason: String) {
        clients.withLock { $0.renewRequested = reason }
    }

    /// Delivers what is queued (up to `timeout`), then releases the client. Sends after this fail.
    public func shutdown(timeout: Duration = .seconds(10)) async {
        let alreadyStopping = state.withLock { state in
            defer { state.stopping = true }
            return state.stopping
        }
        guard !alreadyStopping else {
            await pollThread.withLock { $0 }?.join()
            return
        }
        let client = clients.withLock { $0.current }
        let milliseconds = Int32(timeout.components.seconds * 1000)
        let flushed = (try? await blocking.run { client.flush(timeoutMilliseconds: milliseconds) }) ?? false
        if !flushed {
            logger.warning(
                "producer shut down with undelivered messages",
                metadata: ["kafka.outstanding": "\(client.outstandingMessages())"])
        }
        await pollThread.withLock { $0 }?.join()
    }

    private func pollLoop() {
        while true {
            renewIfRequested()
            releaseRetired()
            let client = clients.withLock { $0.current }
            let stopping = state.withLock { $0.stopping && $0.pending.isEmpty }
            if stopping && client.outstandingMessages() == 0 { break }
            guard let event = client.poll(timeoutMilliseconds: 50) else {
                // Still stopping after a flush timeout: fail what is left rather than wait forever.
                if state.withLock({ $0.stopping }) && client.outstandingMessages() == 0 { break }
                continue
            }
            handle(event, fromCurrent: true)
        }
        let leftovers = state.withLock { state in
            defer { state.pending = [:] }
            return state.pending
        }
        for pending in leftovers.values {
            pending.future.complete(.failure(KafkaError(.shutdown, "the producer shut down before delivery")))
        }
        let (current, retired) = clients.withLock { ($0.current, $0.retired.map(\.client)) }
        for client in retired + [current] { client.destroy() }
    }

    /// Swaps in a new client and purges the old one, whose purged messages' reports come from polling it.
    private func renewIfRequested() {
        guard let reason = clients.withLock({ $0.renewRequested }) else { return }
        let fresh: RDKafkaClient
        do {
            fresh = try RDKafkaClient.make(kind: .producer, properties: properties, logger: logger)
        } catch {
            logger.error("Kafka producer not renewed", metadata: ["error": "\(error)"])
            clients.withLock { $0.renewRequested = nil }
            return
        }
        // The old client is not purged (purging an idempotent producer's in-flight messages crashed
        // librdkafka 2.8.0 with a double free). Its messages fail here at once instead, retriable, and
        // their late reports from the old client are ignored. It would deliver nothing more anyway:
        // the broker refuses its producer id, or its error was fatal.
        let orphaned: [DeliveryFuture] = clients.withLock { clients in
            clients.retired.append((clients.current, .now))
            clients.current = fresh
            clients.generation += 1
            clients.renewRequested = nil
            return state.withLock { state in
                state.forgottenId.renewed()
                let orphaned = state.pending.filter { $0.value.generation < clients.generation }
                for token in orphaned.keys { state.pending.removeValue(forKey: token) }
                return orphaned.values.map(\.future)
            }
        }
        for future in orphaned {
            future.complete(
                .failure(KafkaError(.renewed, "the producer was renewed before delivery: \(reason)", isRetriable: true))
            )
        }
        renewals.increment()
        logger.warning(
            "Kafka producer renewed", metadata: ["reason": "\(reason)", "kafka.undelivered": "\(orphaned.count)"])
    }

    /// Polls replaced clients for their last reports, and releases each once it is empty and a while has
    /// passed (an admin call may still hold it: their timeouts are 10 s at most).
    private func releaseRetired() {
        let retired = clients.withLock { $0.retired }
        guard !retired.isEmpty else { return }
        var released: [ObjectIdentifier] = []
        for (client, at) in retired {
            while let event = client.poll(timeoutMilliseconds: 0) { handle(event, fromCurrent: false) }
            if client.outstandingMessages() == 0 && ContinuousClock.now - at > .seconds(30) {
                client.destroy()
                released.append(ObjectIdentifier(client))
            }
        }
        guard !released.isEmpty else { return }
        clients.withLock { $0.retired.removeAll { released.contains(ObjectIdentifier($0.client)) } }
    }

    /// `fromCurrent`: the event comes from the client in use, not from one already replaced (whose fatal
    /// error must not replace the new one).
    private func handle(_ event: RDKafkaClient.Event, fromCurrent: Bool) {
        switch event {
        case .deliveryReports(let outcomes):
            for outcome in outcomes {
                let pending = state.withLock { state in
                    if fromCurrent, case .success = outcome.result { state.forgottenId.delivered() }
                    return state.pending.removeValue(forKey: outcome.token)
                }
                // A replaced client's report of a message already failed with `.renewed` is not counted.
                guard let pending else { continue }
                switch outcome.result {
                case .success(let report):
                    sent.increment()
                    logger.debug(
                        "delivered",
                        metadata: [
                            "kafka.partition": "\(report.topic)[\(report.partition)]",
                            "kafka.offset": "\(report.offset)",
                        ])
                case .failure: failed.increment()
                }
                pending.span?.end(outcome.result)
                pending.future.complete(outcome.result)
            }
        case .statistics(let json) where fromCurrent:
            guard let idempotence = ProducerStatistics.idempotence(in: json) else { return }
            if state.withLock({ $0.forgottenId.read(idempotence) }) {
                renew(
                    reason:
                        "the broker keeps refusing producer id \(idempotence.producerID) (epoch \(idempotence.producerEpoch), nothing delivered)"
                )
            }
        case .error(let error, let fatal):
            if fatal && fromCurrent {
                // librdkafka's producer is unusable after a fatal error (an idempotence violation, such as
                // a broker that forgot its producer id): start over.
                logger.critical("fatal producer error", metadata: ["error": "\(error)"])
                renew(reason: "fatal error: \(error)")
            } else if fatal {
                logger.info("fatal error of a replaced producer", metadata: ["error": "\(error)"])
            } else {
                logger.warning("producer error", metadata: ["error": "\(error)"])
                if error.code == .allBrokersDown && fromCurrent
                    && state.withLock({ $0.forgottenId.shouldRenewWhenAllBrokersDown() })
                {
                    renew(
                        reason:
                            "every broker connection dropped: a broker that comes back without its state gives this producer id to another producer"
                    )
                }
            }
        case .log(let level, let facility, let message):
            logLibrdkafka(logger, level: level, facility: facility, message: message)
        default:
            break
        }
    }
}

func logLibrdkafka(_ logger: Logger, level: Int32, facility: String, message: String) {
    // syslog levels: 0-3 errors, 4 warning, 5-6 notice/info, 7 debug.
    let swiftLevel: Logger.Level = level <= 3 ? .error : level == 4 ? .warning : level <= 6 ? .info : .debug
    logger.log(level: swiftLevel, "librdkafka: \(message)", metadata: ["kafka.facility": "\(facility)"])
}

/// The delivery report of an enqueued message, to await when the caller needs it.
public final class DeliveryFuture: Sendable {
    private let state = Mutex<
        (result: Result<DeliveryReport, KafkaError>?, waiters: [CheckedContinuation<DeliveryReport, any Error>])
    >((nil, []))

    func complete(_ result: Result<DeliveryReport, KafkaError>) {
        let waiters = state.withLock { state in
            state.result = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: result.mapError { $0 as any Error }) }
    }

    public func report() async throws -> DeliveryReport {
        try await withCheckedThrowingContinuation { continuation in
            let result = state.withLock { state in
                if state.result == nil { state.waiters.append(continuation) }
                return state.result
            }
            if let result { continuation.resume(with: result.mapError { $0 as any Error }) }
        }
    }
}
