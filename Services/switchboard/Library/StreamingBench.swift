import ArgumentParser
import Foundation
#if canImport(Glibc)
    import Glibc
#endif
import Histogram
import Logging
import Synchronization
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime

/// Shared by the streaming benchmarks and tests: events made by this process, put on the real bus
/// (`sb.client.events`), published by the notifier and delivered by the gateways. Each event carries
/// its creation time, so a client's receipt time gives the whole path's latency.
public final class ConversationEventSource: Sendable {
    let producer: KafkaProducer
    public let conversations: [String]
    /// Events made so far per conversation; the n-th event of a new conversation has offset n.
    private let produced: Mutex<[Int]>
    private let source = EventSource(service: "switchboard-bench", instance: ProcessInfo.processInfo.hostName)

    public init(brokers: String, conversations: [String]) async throws {
        var logger = Logger(label: "switchboard.bench")
        logger.logLevel = .warning
        producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                client: KafkaClientConfiguration(bootstrapServers: brokers, clientID: "switchboard-bench")),
            logger: logger)
        try await producer.createTopics([(name: Topics.clientEvents.name, partitions: Topics.clientEvents.partitions)])
        self.conversations = conversations
        produced = Mutex(Array(repeating: 0, count: conversations.count))
    }

    /// Makes the next event of conversation `index` (a MESSAGE_STREAM_CHUNK with `seq`, `createdAt`
    /// and `padding` extra bytes of text) and hands it to the producer.
    @discardableResult
    public func emit(into index: Int, padding: Int = 0) async throws -> DeliveryFuture {
        let sequence = produced.withLock { counts -> Int in
            counts[index] += 1
            return counts[index]
        }
        let created = Clock.epochMicroseconds()
        let event = try ClientEvent(
            channel: .conversation(conversations[index]),
            payload: BenchChunk(
                chunk: "token \(sequence) " + String(repeating: "x", count: padding), seq: sequence, createdAt: created)
        )
        let envelope = Envelope(time: created, routingKey: conversations[index], source: source, payload: event)
        return try await producer.enqueue(try EventBus.message(envelope, topic: Topics.clientEvents))
    }

    /// The bench's own MESSAGE_STREAM_CHUNK: numbered, and stamped when made (µs since the epoch).
    struct BenchChunk: FramePayload {
        static let frameType = FrameType.messageStreamChunk
        var chunk: String
        var seq: Int
        var createdAt: Int64
    }

    /// Makes `rate` events per second per conversation until `deadline`, spread evenly over time
    /// (one conversation after another, not all at once).
    public func run(ratePerConversation rate: Double, until deadline: ContinuousClock.Instant) async throws {
        let interval = 1 / (rate * Double(conversations.count))
        let clock = ContinuousClock()
        let started = clock.now
        var made = 0
        while clock.now < deadline {
            // Everything due by now, then a short sleep: a steady rate without a timer per event.
            let due = Int((clock.now - started).seconds / interval)
            while made < due {
                try await emit(into: made % conversations.count)
                made += 1
            }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    public func count(of index: Int) -> Int { produced.withLock { $0[index] } }

    /// A bench's common start: settings from flags or the environment, a token authority, a run id
    /// and a source over `conversations` new conversations named `<prefix>-<run>-<n>`.
    static func prepare(brokers: String?, secret: String?, prefix: String, conversations: Int) async throws
        -> (authority: TokenAuthority, runID: String, source: ConversationEventSource)
    {
        let brokers = try setting(brokers, environment: "KAFKA_BROKERS", default: "127.0.0.1:9092")
        let secret = try setting(secret, environment: "JWT_SECRET", default: SwitchboardConfiguration.developmentSecret)
        let runID = String(UUID().uuidString.prefix(8).lowercased())
        let source = try await ConversationEventSource(
            brokers: brokers, conversations: (0..<conversations).map { "\(prefix)-\(runID)-\($0)" })
        return (try await TokenAuthority(secret: secret), runID, source)
    }

    public func shutdown() async { await producer.shutdown() }
}

/// The creation time an event of `ConversationEventSource` carries, and its receipt time, in µs.
func eventLatencyMicros(_ received: FrameInbox.Received) -> UInt64? {
    guard let created = received.frame.data["createdAt"]?.doubleValue else { return nil }
    // The arrival instant on the wall clock: now, minus how long the frame waited in the inbox.
    let arrived = Clock.epochMicroseconds() - Int64(microseconds(.now - received.receivedAt))
    return UInt64(max(0, arrived - Int64(created)))
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Benchmark 2 of the delivery issue: many clients on many conversations, each conversation
/// streaming steadily; event creation → client receipt, and whether anything was lost.
struct FanoutBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "fanout",
        abstract: "Clients on conversations streaming at a steady rate: event creation → receipt, events lost.")

    @Option(help: "The gateway's WebSocket URL.") var gateway = "ws://127.0.0.1:8080/ws"
    @Option(help: "Kafka brokers (env SWITCHBOARD_KAFKA_BROKERS).") var brokers: String?
    @Option(help: "Conversations.") var conversations = 100
    @Option(help: "Clients per conversation.") var clientsPerConversation = 10
    @Option(help: "Events per second per conversation.") var rate = 30.0
    @Option(help: "Seconds of streaming.") var duration = 20
    @Option(help: "HS256 secret (env SWITCHBOARD_JWT_SECRET).") var secret: String?
    @Option(help: "Process id of the gateway, to print its CPU-seconds per 100 000 deliveries.") var gatewayPid: Int32?

    @OptionGroup var output: BenchOutput

    func report() async throws {
        let (authority, runID, source) = try await ConversationEventSource.prepare(
            brokers: brokers, secret: secret, prefix: "fanout", conversations: conversations)
        var gatewayCPUAtStart: Double?
        let names = source.conversations
        let state = FanoutState()
        let clients = conversations * clientsPerConversation
        let url = gateway
        BenchReporter.say("connecting \(clients) clients to \(conversations) conversations…")
        BenchReporter.begin("subscribed", total: clients)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<clients {
                let conversation = index % conversations
                // One user per conversation: it owns the conversation, and its clients are its devices.
                let token = try await authority.mint(user: "fanout-\(runID)-\(conversation)")
                while state.pendingHandshakes(started: index) >= 100 { try await Task.sleep(for: .milliseconds(5)) }
                group.addTask {
                    do {
                        try await Self.follow(
                            url: url, token: token, conversation: names[conversation], index: conversation,
                            source: source, state: state)
                    } catch {
                        state.failed.add(1, ordering: .relaxed)
                    }
                }
            }
            while state.subscribed.load(ordering: .relaxed) + state.failed.load(ordering: .relaxed) < clients {
                try await Task.sleep(for: .milliseconds(50))
            }
            BenchReporter.say(
                "subscribed \(state.subscribed.load(ordering: .relaxed)) (\(state.failed.load(ordering: .relaxed)) failed); streaming \(rate) events/s into each of \(conversations) conversations for \(duration) s…"
            )
            BenchReporter.phase("streaming for \(duration) s…")
            gatewayCPUAtStart = gatewayPid.flatMap { processCPUSeconds(pid: $0) }
            try await source.run(ratePerConversation: rate, until: .now + .seconds(duration))
            state.producing.store(false, ordering: .releasing)
            try await group.waitForAll()
            debugTrace("clients done")
        }
        await source.shutdown()
        let produced = (0..<conversations).reduce(0) { $0 + source.count(of: $1) }
        let expected = produced * clientsPerConversation
        let received = state.received.load(ordering: .relaxed)
        let histogram = state.latencies.withLock { $0 }
        BenchReporter.say(
            "events made \(produced) (\(Double(produced) / Double(duration)) /s); deliveries expected \(expected), received \(received), lost \(expected - received), duplicates \(state.duplicates.load(ordering: .relaxed)), gaps \(state.gaps.load(ordering: .relaxed))"
        )
        if let pid = gatewayPid, let start = gatewayCPUAtStart, let end = processCPUSeconds(pid: pid) {
            BenchReporter.say(
                String(
                    format: "gateway CPU: %.2f s while streaming, %.2f CPU-seconds per 100 000 deliveries", end - start,
                    (end - start) / Double(max(received, 1)) * 100_000))
        }
        BenchReporter.record(LatencySummary(name: "event creation → receipt", histogram: histogram))
    }

    /// One client: subscribes, then counts and times every event of its conversation until the
    /// source has stopped and it has them all (or nothing more comes). Channel events are read
    /// without decoding their JSON (the client shares the machine with the servers).
    static func follow(
        url: String, token: String, conversation: String, index: Int, source: ConversationEventSource,
        state: FanoutState
    ) async throws {
        let tally = FanoutTally()
        let prefix = #"{"offset":"#
        let channelMarker = #""channel":"conversation:\#(conversation)""#
        let observer: ChatClient.TextObserver = { text, receivedAt in
            guard text.hasPrefix(prefix), text.contains(channelMarker) else { return true }
            tally.record(text: text, receivedAt: receivedAt, state: state)
            return false
        }
        try await ChatClient.withConnection(url: url, token: token, logger: quietLogger, observer: observer) { client in
            client.send(
                try ClientCommand(id: "subscribe", payload: SubscribeConversation(conversationId: conversation)))
            guard let ack = await client.frames.first(within: .seconds(60), where: { $0.correlationId == "subscribe" }),
                ack.frame.type == "ACK"
            else {
                state.failed.add(1, ordering: .relaxed)
                return
            }
            state.subscribed.add(1, ordering: .relaxed)
            BenchReporter.step()
            var quietSince = ContinuousClock.now
            var lastCount = 0
            while !client.frames.isFinished {
                try await Task.sleep(for: .milliseconds(100))
                let count = tally.count
                if count != lastCount {
                    lastCount = count
                    quietSince = .now
                }
                if !state.producing.load(ordering: .acquiring) {
                    // Done when it has everything, or when nothing came for 5 s after the end.
                    if count >= source.count(of: index) || ContinuousClock.now - quietSince > .seconds(5) { break }
                }
            }
            tally.finish(into: state)
        }
    }
}

/// One fanout client's count, order check and latencies, fed by its connection's reader.
final class FanoutTally: Sendable {
    private let inner = Mutex<(last: Int64, count: Int, histogram: Histogram<UInt64>)>(
        (0, 0, Histogram(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)))

    var count: Int { inner.withLock { $0.count } }

    /// `text` is a stamped frame: `{"offset":<n>,"epoch":…, … "createdAt":<µs> …}`.
    func record(text: String, receivedAt: ContinuousClock.Instant, state: FanoutState) {
        let utf8 = text.utf8
        guard let offset = Self.number(after: #"{"offset":"#, in: utf8) else { return }
        let created = Self.number(after: #""createdAt":"#, in: utf8)
        let arrived = Clock.epochMicroseconds() - Int64(microseconds(.now - receivedAt))
        inner.withLock { tally in
            if offset <= tally.last {
                state.duplicates.add(1, ordering: .relaxed)
                return
            }
            if offset != tally.last + 1 { state.gaps.add(1, ordering: .relaxed) }
            tally.last = offset
            tally.count += 1
            if let created { _ = tally.histogram.record(UInt64(max(0, arrived - created))) }
        }
    }

    func finish(into state: FanoutState) {
        let (count, histogram) = inner.withLock { ($0.count, $0.histogram) }
        state.received.add(count, ordering: .relaxed)
        state.latencies.withLock { $0.add(histogram) }
    }

    /// The integer right after the first `marker` in `utf8` (digits, optionally followed by `.0`).
    static func number(after marker: String, in utf8: String.UTF8View) -> Int64? {
        let markerBytes = Array(marker.utf8)
        let bytes = Array(utf8)
        guard bytes.count >= markerBytes.count else { return nil }
        var index = 0
        while index + markerBytes.count <= bytes.count {
            if bytes[index] == markerBytes[0], Array(bytes[index..<(index + markerBytes.count)]) == markerBytes {
                var value: Int64 = 0
                var position = index + markerBytes.count
                var digits = 0
                while position < bytes.count, bytes[position] >= 48, bytes[position] <= 57 {
                    value = value * 10 + Int64(bytes[position] - 48)
                    position += 1
                    digits += 1
                }
                return digits > 0 ? value : nil
            }
            index += 1
        }
        return nil
    }
}

final class FanoutState: Sendable {
    let subscribed = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    let received = Atomic<Int>(0)
    let duplicates = Atomic<Int>(0)
    let gaps = Atomic<Int>(0)
    let producing = Atomic<Bool>(true)
    let latencies = Mutex(Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three))

    func pendingHandshakes(started: Int) -> Int {
        started - subscribed.load(ordering: .relaxed) - failed.load(ordering: .relaxed)
    }
}

let quietLogger: Logger = {
    var logger = Logger(label: "switchboard.client")
    logger.logLevel = .error
    return logger
}()

/// Benchmark 4 of the delivery issue: clients following streaming conversations through a gateway
/// that restarts; each reconnects with the documented full-jitter backoff and resumes from its last
/// offset. Reports how long until every client has recovered, and whether any event was lost.
struct ReconnectBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "reconnect",
        abstract: "Clients reconnecting at once after a gateway restart: time until all have recovered, events lost.")

    @Option(help: "The gateways' WebSocket URLs, comma-separated; clients start on the first and reconnect to any.")
    var gateways = "ws://127.0.0.1:8080/ws"
    @Option(help: "Kafka brokers (env SWITCHBOARD_KAFKA_BROKERS).") var brokers: String?
    @Option(help: "Shell command that restarts (or stops) the first gateway.") var restartCommand: String
    @Option(help: "Clients.") var clients = 1000
    @Option(help: "Conversations (clients are spread over them).") var conversations = 100
    @Option(help: "Events per second per conversation while clients are away.") var rate = 5.0
    @Option(help: "HS256 secret (env SWITCHBOARD_JWT_SECRET).") var secret: String?

    @OptionGroup var output: BenchOutput

    func report() async throws {
        let urls = gateways.split(separator: ",").map(String.init)
        guard let first = urls.first else { throw ValidationError("--gateways names no gateway") }
        let (authority, runID, source) = try await ConversationEventSource.prepare(
            brokers: brokers, secret: secret, prefix: "reconnect", conversations: conversations)
        let names = source.conversations
        let state = ReconnectState()
        // One event per conversation first, so every channel exists and a subscription's ACK gives
        // each client a position to resume from even before its first live event.
        var primed: DeliveryFuture?
        for index in 0..<conversations { primed = try await source.emit(into: index) }
        _ = try await primed?.report()
        BenchReporter.say("connecting \(clients) clients to \(first)…")
        BenchReporter.begin("subscribed", total: clients)
        let clock = ContinuousClock()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<clients {
                let conversation = index % conversations
                let token = try await authority.mint(user: "reconnect-\(runID)-\(conversation)")
                while index - state.subscribed.load(ordering: .relaxed) - state.gaveUp.load(ordering: .relaxed) >= 100 {
                    try await Task.sleep(for: .milliseconds(5))
                }
                group.addTask {
                    await ReconnectingClient(
                        urls: urls, token: token, conversation: names[conversation], index: conversation,
                        source: source,
                        state: state
                    ).run()
                }
            }
            while state.subscribed.load(ordering: .relaxed) + state.gaveUp.load(ordering: .relaxed) < clients {
                try await Task.sleep(for: .milliseconds(50))
            }
            BenchReporter.say(
                "all subscribed; streaming \(rate) events/s per conversation, then restarting the gateway")
            let streaming = Task { try await source.run(ratePerConversation: rate, until: .now + .seconds(3600)) }
            try await Task.sleep(for: .seconds(3))
            let restartedAt = clock.now
            state.restartedAt.withLock { $0 = restartedAt }
            let status = try await Self.shell(restartCommand)
            debugTrace("restart command done: \(status)")
            BenchReporter.say("restart command exited with \(status) after \(clock.now - restartedAt)")
            // Wait for every client to come back (the seed's recovery budget is 30 s; give it 120).
            while state.recovered.load(ordering: .relaxed) + state.notRecovered.load(ordering: .relaxed) < clients,
                clock.now - restartedAt < .seconds(120)
            {
                try await Task.sleep(for: .milliseconds(100))
            }
            let allBack = clock.now - restartedAt
            debugTrace(
                "back: recovered \(state.recovered.load(ordering: .relaxed)) not \(state.notRecovered.load(ordering: .relaxed))"
            )
            // Keep streaming a moment so the last clients are seen catching up live, then stop and drain.
            try await Task.sleep(for: .seconds(2))
            streaming.cancel()
            _ = await streaming.result
            debugTrace("streaming stopped")
            state.producing.store(false, ordering: .releasing)
            // Every client now catches up to the end; one that has not within 60 s is reported.
            let drainDeadline = clock.now + .seconds(60)
            while state.finished.load(ordering: .relaxed) < clients, clock.now < drainDeadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            let unfinished = clients - state.finished.load(ordering: .relaxed)
            debugTrace(
                "drained: unfinished \(unfinished) \(state.phases.withLock { Dictionary(grouping: $0.values, by: { $0 }).mapValues(\.count) })"
            )
            if unfinished > 0 {
                BenchReporter.say(
                    "\(unfinished) clients did not finish: \(state.phases.withLock { Dictionary(grouping: $0.values, by: { $0 }).mapValues(\.count) })"
                )
                group.cancelAll()
            }
            try await group.waitForAll()
            let recoveries = state.recoveryTimes.withLock { $0 }
            BenchReporter.say(
                "reconnected and recovered: \(state.recovered.load(ordering: .relaxed)) of \(clients) (not recovered \(state.notRecovered.load(ordering: .relaxed))); all back \(allBack) after the restart began"
            )
            BenchReporter.record(LatencySummary(name: "restart → client recovered", histogram: recoveries))
            BenchReporter.record(
                LatencySummary(name: "disconnected → recovered", histogram: state.reconnectTimes.withLock { $0 }))
        }
        await source.shutdown()
        let missing = state.missing.load(ordering: .relaxed)
        BenchReporter.say(
            "events made \((0..<conversations).reduce(0) { $0 + source.count(of: $1) }); lost \(missing), duplicates \(state.duplicates.load(ordering: .relaxed)), connection attempts refused \(state.refused.load(ordering: .relaxed))"
        )
    }

    /// Runs `command` with /bin/sh and returns its exit status. posix_spawn and waitpid on a thread
    /// of its own: Foundation's Process never reported the exit here (its child stayed a zombie).
    static func shell(_ command: String) async throws -> Int32 {
        var pid: pid_t = 0
        let arguments = ["/bin/sh", "-c", command]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let spawned = posix_spawn(&pid, "/bin/sh", nil, nil, &argv, environ)
        guard spawned == 0 else { throw ValidationError("could not run \(command): error \(spawned)") }
        let child = pid
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var status: Int32 = 0
                while waitpid(child, &status, 0) == -1 && errno == EINTR {}
                // WEXITSTATUS, which Swift does not import.
                continuation.resume(returning: (status >> 8) & 0xFF)
            }
        }
    }
}

final class ReconnectState: Sendable {
    let subscribed = Atomic<Int>(0)
    let gaveUp = Atomic<Int>(0)
    let recovered = Atomic<Int>(0)
    let notRecovered = Atomic<Int>(0)
    let missing = Atomic<Int>(0)
    let duplicates = Atomic<Int>(0)
    let refused = Atomic<Int>(0)
    let producing = Atomic<Bool>(true)
    let restartedAt = Mutex<ContinuousClock.Instant?>(nil)
    let recoveryTimes = Mutex(
        Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three))
    let reconnectTimes = Mutex(
        Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three))
    let finished = Atomic<Int>(0)
    /// What each client is doing, for the report of those that do not finish.
    let phases = Mutex<[String: String]>([:])
}

/// A client as docs/protocol.md asks clients to be: on a close or a failed connection it waits a
/// full-jitter backoff (500 ms doubling to 20 s), connects to any gateway, and resubscribes from its
/// last offset.
struct ReconnectingClient: Sendable {
    let urls: [String]
    let token: String
    let conversation: String
    let index: Int
    let source: ConversationEventSource
    let state: ReconnectState
    static let backoff = Backoff(initial: .milliseconds(500), maximum: .seconds(20), factor: 2)

    /// Where the client is in its conversation, across connections.
    final class Progress: Sendable {
        let position = Mutex<StreamPosition?>(nil)
        /// When the last connection that had subscribed ended.
        let disconnectedAt = Mutex<ContinuousClock.Instant?>(nil)
        let connections = Atomic<Int>(0)
        let done = Atomic<Bool>(false)
    }

    func run() async {
        let progress = Progress()
        let id = UUID().uuidString
        @Sendable func phase(_ name: String) { state.phases.withLock { $0[id] = name } }
        defer {
            state.finished.add(1, ordering: .relaxed)
            state.phases.withLock { $0[id] = nil }
        }
        var attempt = 0
        var url = urls[0]
        while !progress.done.load(ordering: .acquiring), !Task.isCancelled {
            do {
                phase("connecting")
                try await ChatClient.withConnection(url: url, token: token, logger: quietLogger) { client in
                    phase("following")
                    try await follow(client, progress: progress)
                    phase("closing")
                }
                progress.disconnectedAt.withLock { $0 = .now }
                attempt = 0
            } catch {
                state.refused.add(1, ordering: .relaxed)
            }
            if progress.done.load(ordering: .acquiring) { break }
            if progress.connections.load(ordering: .relaxed) == 0, attempt >= 5 {
                state.gaveUp.add(1, ordering: .relaxed)
                return
            }
            phase("backing off")
            try? await Task.sleep(for: Self.backoff.delay(attempt: attempt))
            attempt += 1
            url = urls.randomElement() ?? url
        }
    }

    private func follow(_ client: ChatClient, progress: Progress) async throws {
        let resumeFrom = progress.position.withLock { $0 }
        client.send(
            try ClientCommand(
                id: "subscribe", payload: SubscribeConversation(conversationId: conversation, resumingAfter: resumeFrom)
            ))
        guard let ack = await client.frames.first(within: .seconds(30), where: { $0.correlationId == "subscribe" }),
            ack.frame.type == "ACK"
        else { return }
        let isReconnect = progress.connections.add(1, ordering: .relaxed).newValue > 1
        if resumeFrom == nil, let offset = ack.frame.data["offset"]?.intValue,
            let epoch = ack.frame.data["epoch"]?.stringValue
        {
            progress.position.withLock { $0 = $0 ?? StreamPosition(epoch: epoch, offset: Int64(offset)) }
        }
        if !isReconnect {
            state.subscribed.add(1, ordering: .relaxed)
            BenchReporter.step()
        } else if ack.frame.data["recovered"]?.boolValue == true || resumeFrom == nil {
            state.recovered.add(1, ordering: .relaxed)
            if let restartedAt = state.restartedAt.withLock({ $0 }) {
                _ = state.recoveryTimes.withLock { $0.record(microseconds(ack.receivedAt - restartedAt)) }
            }
            if let disconnectedAt = progress.disconnectedAt.withLock({ $0 }) {
                _ = state.reconnectTimes.withLock { $0.record(microseconds(ack.receivedAt - disconnectedAt)) }
            }
        } else {
            state.notRecovered.add(1, ordering: .relaxed)
        }
        let channel = "conversation:\(conversation)"
        // Nothing of the conversation for 15 s after the source stopped: what is missing by then is lost
        // (a loaded machine can be seconds behind). Frames of other channels (the system channel's
        // status) do not count as the conversation's.
        var lastOfConversation = ContinuousClock.now
        func quietTooLong() -> Bool {
            !state.producing.load(ordering: .acquiring) && ContinuousClock.now - lastOfConversation > .seconds(15)
        }
        while !Task.isCancelled {
            guard let received = await client.frames.next(within: .seconds(1)) else {
                if client.frames.isFinished || quietTooLong() { break }
                continue
            }
            guard received.frame.channel == channel, let offset = received.frame.offset,
                let epoch = received.frame.epoch
            else {
                if quietTooLong() { break }
                continue
            }
            lastOfConversation = .now
            let previous = progress.position.withLock { position -> Int64 in
                defer { position = StreamPosition(epoch: epoch, offset: max(offset, position?.offset ?? 0)) }
                return position?.offset ?? 0
            }
            if offset <= previous {
                state.duplicates.add(1, ordering: .relaxed)
            } else if offset != previous + 1 {
                state.missing.add(Int(offset - previous - 1), ordering: .relaxed)
                debugTrace(
                    "gap in \(conversation): \(previous) → \(offset), connection \(progress.connections.load(ordering: .relaxed)), resumed from \(resumeFrom?.description ?? "-")"
                )
            }
            if !state.producing.load(ordering: .acquiring), offset >= Int64(source.count(of: index)) {
                progress.done.store(true, ordering: .releasing)
                return
            }
        }
        // Nothing for 15 s while the source has stopped: whatever is still missing is lost.
        if !client.frames.isFinished, !state.producing.load(ordering: .acquiring) {
            let last = progress.position.withLock { $0?.offset ?? 0 }
            state.missing.add(max(0, source.count(of: index) - Int(last)), ordering: .relaxed)
            if source.count(of: index) > Int(last) {
                debugTrace("end of \(conversation): last \(last) of \(source.count(of: index))")
            }
            progress.done.store(true, ordering: .releasing)
        }
    }
}

private func debugTrace(_ line: String) {
    guard ProcessInfo.processInfo.environment["SB_BENCH_DEBUG"] != nil else { return }
    FileHandle.standardError.write(Data("[\(Date())] \(line)\n".utf8))
}
