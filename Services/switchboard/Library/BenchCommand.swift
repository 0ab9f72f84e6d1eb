import ArgumentParser
import Foundation
import Histogram
import Logging
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime
import Synchronization

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure Switchboard (run against a release build).",
        subcommands: [
            RoundTripBench.self, BusHopBench.self, ConnectionsBench.self, FanoutBench.self, ReconnectBench.self,
            WorkflowBench.self, OverheadBench.self, AgentsBench.self, HistoryBench.self, IngestBench.self,
            VoiceOverheadBench.self, VoiceDevicesBench.self,
            NotifierCodecBench.self, NotificationsBench.self,
        ])
}

/// Latencies in microseconds, summarised from an HDR histogram.
public struct LatencySummary: Sendable, Codable, Equatable, CustomStringConvertible {
    public var name: String
    public var count: UInt64
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var max: Double

    public init(name: String, histogram: Histogram<UInt64>) {
        self.name = name
        count = histogram.totalCount
        p50 = Double(histogram.valueAtPercentile(50)) / 1000
        p90 = Double(histogram.valueAtPercentile(90)) / 1000
        p99 = Double(histogram.valueAtPercentile(99)) / 1000
        max = Double(histogram.max) / 1000
    }

    public var description: String {
        String(
            format: "%-28@ n=%-6llu p50=%8.2f ms  p90=%8.2f ms  p99=%8.2f ms  max=%8.2f ms", name as NSString, count,
            p50, p90, p99, max)
    }
}

func microseconds(_ duration: Duration) -> UInt64 {
    UInt64(max(0, duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000))
}

struct RoundTripBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "roundtrip",
        abstract: "Send messages one at a time over the WebSocket and time send → first chunk and send → stream end.",
        discussion:
            "Run the agent-worker with SWITCHBOARD_AGENT_TOKEN_RATE=0 and SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS=0 to time the platform rather than the offline engine's pacing."
    )

    @Option(help: "The gateway's WebSocket URL.") var gateway = "ws://127.0.0.1:8080/ws"
    @Option(help: "Messages to send.") var messages = 1000
    @Option(help: "Messages sent first and not measured.") var warmup = 50
    @Option(
        help:
            "Messages each user sends before the next user takes over on a connection of its own: a person sends a few messages, not a thousand, and the gateway limits each user to 20 commands/s after a burst of 40."
    ) var messagesPerUser = 20
    @Option(help: "HS256 secret (env SWITCHBOARD_JWT_SECRET).") var secret: String?

    @OptionGroup var output: BenchOutput

    func report() async throws {
        guard messagesPerUser > 0 else { throw ValidationError("--messages-per-user must be positive") }
        let secret = try setting(secret, environment: "JWT_SECRET", default: SwitchboardConfiguration.developmentSecret)
        let authority = try await TokenAuthority(secret: secret)
        let result = try await Self.measure(
            gateway: gateway, messages: messages, warmup: warmup, messagesPerUser: messagesPerUser,
            token: { try await authority.mint(user: "bench-\(UUID().uuidString.prefix(8))") })
        BenchReporter.say(
            "roundtrip over \(messages) messages, \(messagesPerUser) per user (\(result.lost) without a complete stream)"
        )
        BenchReporter.record(result.firstChunk)
        BenchReporter.record(result.streamEnd)
    }

    struct Result: Sendable {
        var firstChunk: LatencySummary
        var streamEnd: LatencySummary
        var lost: Int
    }

    /// One message at a time; every `messagesPerUser` messages a new user (a new token and connection,
    /// opened before its first message is timed) takes over.
    static func measure(
        gateway: String, messages: Int, warmup: Int, messagesPerUser: Int, token: @Sendable () async throws -> String
    ) async throws -> Result {
        struct Tally: Sendable {
            var firstChunk = Histogram<UInt64>(
                highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            var streamEnd = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            var lost = 0
        }
        var tally = Tally()
        let total = warmup + messages
        BenchReporter.begin("messages", total: total)
        var next = 0
        while next < total {
            let range = next..<min(total, next + messagesPerUser)
            next = range.upperBound
            let conversation = "bench-\(UUID().uuidString.lowercased())"
            let outcome = try await ChatClient.withConnection(url: gateway, token: try await token()) {
                [tally] client -> Tally in
                var tally = tally
                for index in range {
                    BenchReporter.step()
                    let sentAt = ContinuousClock.now
                    client.send(
                        try ClientCommand(
                            id: "bench-\(index)",
                            payload: SendMessage(conversationId: conversation, content: "benchmark message \(index)")))
                    var chunkAt: ContinuousClock.Instant?
                    var endAt: ContinuousClock.Instant?
                    while endAt == nil, let received = await client.frames.next(within: .seconds(10)) {
                        switch received.frame.type {
                        case FrameType.messageStreamChunk where chunkAt == nil: chunkAt = received.receivedAt
                        case FrameType.messageStreamEnd: endAt = received.receivedAt
                        case "ERROR":
                            throw ValidationError(
                                "the gateway refused a message: \(received.frame.error?.message ?? "")")
                        default: break
                        }
                    }
                    guard let chunkAt, let endAt else {
                        tally.lost += 1
                        continue
                    }
                    if index >= warmup {
                        _ = tally.firstChunk.record(microseconds(chunkAt - sentAt))
                        _ = tally.streamEnd.record(microseconds(endAt - sentAt))
                    }
                }
                return tally
            }
            guard let result = outcome.result else {
                throw ValidationError("the connection closed (code \(outcome.closeCode.map(String.init) ?? "none"))")
            }
            tally = result
        }
        return Result(
            firstChunk: LatencySummary(name: "send → first chunk", histogram: tally.firstChunk),
            streamEnd: LatencySummary(name: "send → stream end", histogram: tally.streamEnd), lost: tally.lost)
    }
}

struct BusHopBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "bus", abstract: "Time one bus hop: produce → consume through the broker, at a steady rate.")

    @Option(help: "Kafka brokers (env SWITCHBOARD_KAFKA_BROKERS).") var brokers: String?
    @Option(help: "Messages to send.") var messages = 2000
    @Option(help: "Messages per second.") var rate = 1000

    @OptionGroup var output: BenchOutput

    func report() async throws {
        let brokers = try setting(brokers, environment: "KAFKA_BROKERS", default: "127.0.0.1:9092")
        let summary = try await Self.measure(brokers: brokers, messages: messages, rate: rate)
        BenchReporter.say("bus hop over \(messages) messages at \(rate)/s")
        BenchReporter.record(summary)
    }

    static func measure(brokers: String, messages: Int, rate: Int) async throws -> LatencySummary {
        var logger = Logger(label: "switchboard.bench")
        logger.logLevel = .warning
        let topic = "sb.bench.\(UUID().uuidString.prefix(8).lowercased())"
        let client = KafkaClientConfiguration(bootstrapServers: brokers, clientID: "switchboard-bench")
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: client), logger: logger)
        try await producer.createTopics([(name: topic, partitions: 1)])
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(client: client, groupID: "sb-bench-\(UUID().uuidString)"),
            topics: [topic], logger: logger)
        // Wait for the assignment, then send warm-up messages until one arrives: the consumer's first
        // fetch position is known and the measured messages see a steady state.
        var iterator = consumer.partitions.makeAsyncIterator()
        guard let partition = await iterator.next() else { throw ValidationError("no partition assigned") }
        BenchReporter.begin("messages", total: messages)
        let summary = try await withThrowingTaskGroup(of: LatencySummary?.self) { group in
            let warmedUp = OnceFlag()
            group.addTask {
                var histogram = Histogram<UInt64>(
                    highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
                var received = 0
                for await message in partition {
                    let text = String(decoding: message.value, as: UTF8.self)
                    if text == "warm-up" {
                        warmedUp.set()
                        continue
                    }
                    let sentMicros = Int64(text) ?? 0
                    _ = histogram.record(UInt64(max(0, Clock.epochMicroseconds() - sentMicros)))
                    received += 1
                    BenchReporter.step()
                    if received == messages { break }
                }
                return LatencySummary(name: "produce → consume", histogram: histogram)
            }
            group.addTask {
                while !warmedUp.isSet {
                    _ = try await producer.send(
                        KafkaOutgoingMessage(topic: topic, key: "bench", value: Array("warm-up".utf8)))
                    try await Task.sleep(for: .milliseconds(20))
                }
                let interval = Duration.nanoseconds(Int64(1e9 / Double(max(rate, 1))))
                let clock = ContinuousClock()
                var deadline = clock.now
                for _ in 0..<messages {
                    deadline = deadline.advanced(by: interval)
                    try await clock.sleep(until: deadline)
                    _ = try await producer.enqueue(
                        KafkaOutgoingMessage(
                            topic: topic, key: "bench", value: Array(String(Clock.epochMicroseconds()).utf8)))
                }
                return nil
            }
            var summary: LatencySummary?
            for try await result in group { if let result { summary = result } }
            return summary
        }
        await consumer.close()
        await producer.shutdown()
        guard let summary else { throw ValidationError("no measurement") }
        return summary
    }
}
