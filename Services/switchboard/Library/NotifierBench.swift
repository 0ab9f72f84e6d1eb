import ArgumentParser
import AsyncHTTPClient
import Foundation
import Histogram
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import Synchronization

#if canImport(Glibc)
    @preconcurrency import Glibc
#endif

/// CPU seconds a process has used so far (utime + stime of /proc/<pid>/stat), nil when it is gone.
func processCPUSeconds(pid: Int32) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let end = stat.lastIndex(of: ")")
    else { return nil }
    // Fields after the command name; utime and stime are fields 14 and 15 of the whole line.
    let fields = stat[stat.index(after: end)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// The notifier's per-event work, in-process: the envelope → client frame step as it was
/// (`JSONDecoder` of the envelope, `JSONEncoder` of the frame) and as it is (`ClientEventRoute`).
struct NotifierCodecBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "notifier-codec",
        abstract:
            "CPU per event of the notifier's envelope → frame step, decoded in full vs. read by ClientEventRoute.",
        discussion: "Needs no stack. Run it from a release build.")

    @Option(help: "Events per measured loop.") var events = 100_000

    @OptionGroup var output: BenchOutput

    /// A MESSAGE_STREAM_CHUNK the size of an agent-worker's.
    struct SampleChunk: FramePayload {
        static let frameType = FrameType.messageStreamChunk
        var messageId: String
        var role = "analyst"
        var chunk = "the next few words of the answer "
        var index = 17
    }

    func report() async throws {
        let event = try ClientEvent(
            channel: .conversation(UUID().uuidString.lowercased()),
            payload: SampleChunk(messageId: UUID().uuidString.lowercased()))
        let bytes = try EnvelopeCodec.encode(
            Envelope(
                routingKey: event.channel.description, source: EventSource(service: "agent-worker", instance: "a-1"),
                payload: event))
        var sink = 0
        func decoded() throws {
            let envelope = try EnvelopeCodec.decode(ClientEvent.self, from: bytes)
            let frame = ServerFrame(
                id: envelope.id.uuidString.lowercased(), type: envelope.payload.frameType,
                timestamp: envelope.time / 1000,
                data: envelope.payload.data, channel: envelope.payload.channel.description)
            sink &+= Array(try FrameEncoding.json(frame).utf8).count
        }
        func read() throws {
            sink &+= try ClientEventRoute(envelope: bytes).frameJSON().count
        }
        let loops = max(1, events)
        for _ in 0..<min(loops, 2000) {
            try decoded()
            try read()
        }
        let before = Self.cpuSeconds()
        for _ in 0..<loops { try decoded() }
        let middle = Self.cpuSeconds()
        for _ in 0..<loops { try read() }
        let after = Self.cpuSeconds()
        let old = (middle - before) / Double(loops) * 1e6
        let new = (after - middle) / Double(loops) * 1e6
        BenchReporter.say(
            String(
                format:
                    "notifier-codec over %d events (%d-byte envelope): JSONDecoder + JSONEncoder %.2f µs/event, ClientEventRoute %.2f µs/event (%.1f× less CPU)",
                loops, bytes.count, old, new, old / max(new, 1e-9)))
        if sink == 42 { print("") }  // keeps the loops' results alive
    }

    static func cpuSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

/// The publish path alone: `POST /api/v1/notifications` at a steady rate, each notification timed to
/// its 202 and to its arrival on the user's live Redis channel (creation → PUBLISH received), with
/// the broker's CPU per 1000 notifications.
struct NotificationsBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "notifications",
        abstract: "POST notifications at a rate; time POST → 202 and creation → Redis PUBLISH; broker CPU per 1000.",
        discussion:
            "Path: gateway → Kafka → notifier → Redis script → PUBLISH, read by this command's Redis subscriber.")

    @Option(help: "The gateway's HTTP URL.") var gateway = "http://127.0.0.1:8080"
    @Option(help: "Redis URL (env SWITCHBOARD_REDIS_URL).") var redisURL: String?
    @Option(help: "HS256 secret (env SWITCHBOARD_JWT_SECRET).") var secret: String?
    @Option(help: "Notifications per second offered.") var rate = 3000
    @Option(help: "Seconds to offer them for.") var duration = 10
    @Option(help: "Users the notifications are spread over (one live channel each).") var users = 100
    @Option(help: "Requests in flight at most.") var concurrency = 64
    @Option(help: "The broker's pid, for its CPU-seconds per 1000 notifications.") var brokerPID: Int32?
    @Option(help: "The notifier's pid, for its CPU-seconds per 1000 notifications.") var notifierPID: Int32?
    @Option(help: "The gateway's pid, for its CPU-seconds per 1000 notifications.") var gatewayPID: Int32?

    @OptionGroup var output: BenchOutput

    struct Received {
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var count = 0
    }

    func report() async throws {
        let secret = try setting(secret, environment: "JWT_SECRET", default: SwitchboardConfiguration.developmentSecret)
        let redisURL = try setting(redisURL, environment: "REDIS_URL", default: "redis://127.0.0.1:6390")
        guard let endpoint = RedisEndpoint(url: redisURL) else {
            throw ValidationError("not a redis:// URL: \(redisURL)")
        }
        guard rate > 0, duration > 0, users > 0, concurrency > 0 else {
            throw ValidationError("rate, duration, users and concurrency must be positive")
        }
        let token = try await TokenAuthority(secret: secret).mint(user: "bench-admin", roles: ["admin"])
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            try await measure(endpoint: endpoint, token: token, http: http)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    private func measure(endpoint: RedisEndpoint, token: String, http: HTTPClient) async throws {
        var logger = Logger(label: "switchboard.bench")
        logger.logLevel = .warning
        let run = UUID().uuidString.prefix(8).lowercased()
        let userIDs = (0..<users).map { "bench-n-\(run)-\($0)" }
        let received = Shared(Received())
        let subscriber = RedisSubscriber(endpoint: endpoint, logger: logger)
        let total = rate * duration
        let group = ServiceGroup(services: [subscriber], gracefulShutdownSignals: [], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            for user in userIDs {
                _ = try await subscriber.subscribe(Keyspace.ClientChannel.live(.user(user))) { bytes in
                    guard let message = ChannelWire.decode(bytes) else { return }
                    let age = max(0, Clock.epochMicroseconds() - message.createdAt)
                    received.value.withLock { received in
                        _ = received.histogram.record(UInt64(age))
                        received.count += 1
                    }
                }
            }
            let cpuBefore = cpu()
            let started = ContinuousClock.now
            let (accepted, refused, post) = try await send(total: total, users: userIDs, token: token, http: http)
            let sendSeconds = seconds(ContinuousClock.now - started)
            BenchReporter.phase("waiting for the last notifications…")
            let deadline = ContinuousClock.now + .seconds(10)
            while received.value.withLock({ $0.count }) < accepted && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            let cpuAfter = cpu()
            let result = received.value.withLock { $0 }
            BenchReporter.say(
                String(
                    format:
                        "notifications: %d offered at %d/s over %d users, %d accepted in %.1f s (%.0f/s), %d refused, %d published, %d lost",
                    total, rate, users, accepted, sendSeconds, Double(accepted) / sendSeconds, refused, result.count,
                    max(0, accepted - result.count)))
            BenchReporter.record(post)
            BenchReporter.record(LatencySummary(name: "created → Redis PUBLISH", histogram: result.histogram))
            for (name, before) in cpuBefore {
                guard let after = cpuAfter.first(where: { $0.0 == name })?.1 else { continue }
                BenchReporter.say(
                    String(
                        format: "%@ CPU: %.2f s in all, %.3f CPU-seconds per 1000 notifications", name as NSString,
                        after - before,
                        (after - before) / Double(max(accepted, 1)) * 1000))
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    private func cpu() -> [(String, Double)] {
        [("broker (tansu)", brokerPID), ("notifier", notifierPID), ("gateway", gatewayPID)].compactMap { name, pid in
            pid.flatMap { processCPUSeconds(pid: $0) }.map { (name, $0) }
        }
    }

    /// Offers `total` POSTs paced at `rate`, `concurrency` at a time; a sender that falls behind shows
    /// as a lower accepted rate.
    private func send(total: Int, users: [String], token: String, http: HTTPClient) async throws -> (
        Int, Int, LatencySummary
    ) {
        let shared = SendState()
        let started = ContinuousClock.now
        let interval = Duration.seconds(1) / rate
        let url = gateway + "/api/v1/notifications"
        BenchReporter.begin("notifications", total: total)
        await withDiscardingTaskGroup { group in
            for _ in 0..<concurrency {
                group.addTask {
                    while true {
                        let index = shared.next.add(1, ordering: .relaxed).oldValue
                        guard index < total else { return }
                        let due = started + interval * index
                        if due > .now { try? await Task.sleep(until: due) }
                        var request = HTTPClientRequest(url: url)
                        request.method = .POST
                        request.headers.add(name: "Authorization", value: "Bearer \(token)")
                        request.headers.add(name: "Content-Type", value: "application/json")
                        let body =
                            #"{"userId":"\#(users[index % users.count])","type":"info","title":"bench","message":"notification \#(index)"}"#
                        request.body = .bytes(ByteBuffer(string: body))
                        let sent = ContinuousClock.now
                        let ok: Bool
                        do {
                            let response = try await http.execute(request, timeout: .seconds(10))
                            _ = try await response.body.collect(upTo: 1 << 16)
                            ok = response.status == .accepted
                        } catch {
                            ok = false
                        }
                        let elapsed = microseconds(ContinuousClock.now - sent)
                        shared.tally.withLock { tally in
                            if ok {
                                tally.accepted += 1
                                _ = tally.histogram.record(elapsed)
                            } else {
                                tally.refused += 1
                            }
                        }
                        BenchReporter.step()
                    }
                }
            }
        }
        let result = shared.tally.withLock { $0 }
        return (result.accepted, result.refused, LatencySummary(name: "POST → 202", histogram: result.histogram))
    }

    /// What the sending tasks share: the next notification's index and the tally of answers.
    private final class SendState: Sendable {
        struct Tally {
            var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            var accepted = 0
            var refused = 0
        }
        let next = Atomic<Int>(0)
        let tally = Mutex(Tally())
    }

    private final class Shared<Value: Sendable>: Sendable {
        let value: Mutex<Value>
        init(_ value: Value) { self.value = Mutex(value) }
    }

    private func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
