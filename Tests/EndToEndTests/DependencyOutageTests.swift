import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardStore
import SwitchboardTestSupport
import Testing

/// A dependency that goes away makes work wait, never disappear; what is dead-lettered can be seen and
/// sent back (`switchboard dlq`).
@Suite(.serialized, .timeLimit(.minutes(5)))
struct DependencyOutageTests {
    /// The dead letters retained per topic, as the operator CLI counts them.
    static func deadLetterCounts(_ bin: String, brokers: String = TestEnvironment.kafkaBrokers) async throws
        -> [String: Int64]
    {
        let outcome = try await CLITests.switchboard(
            ["dlq", "list", "--json", "--brokers", brokers], binDirectory: bin)
        #expect(outcome.status == 0, "stderr: \(outcome.stderr)")
        struct Count: Decodable {
            var topic: String
            var total: Int64
        }
        let counts = try outcome.stdout.split(separator: "\n").map {
            try JSONDecoder().decode(Count.self, from: Data($0.utf8))
        }
        return Dictionary(counts.map { ($0.topic, $0.total) }, uniquingKeysWith: max)
    }

    /// The reproduction: Redis SIGKILLed in the middle of a reply and back 12 s later. Before,
    /// the notifier and orchestrator gave up after five quick retries and dead-lettered the reply's
    /// events, and a client resuming by offset never saw its end.
    @Test func aReplyOutlivesRedisKilledMidStreamWithNothingLostRepeatedOrDeadLettered() async throws {
        try await ServiceProcesses.withStack(tokensPerSecond: 40) { stack, url, authority in
            let deadLettersBefore = try await Self.deadLetterCounts(stack.binDirectory)
            let token = try await authority.mint(user: "outage-olga")
            let conversation = "outage-\(UUID().uuidString.prefix(8))"
            let first = try await RecoveryTests.sendAndLeave(
                url: url, token: token, conversation, "keep talking while redis is away")
            #expect(first.filter { $0.type == FrameType.messageStreamChunk }.count == 5)

            try LocalServers.killRedis()
            // Longer than every retry budget the services had (five attempts, well under a second).
            try await Task.sleep(for: .seconds(12))
            try await LocalServers.restartRedis()

            // As a real client does: reconnect with backoff until the gateway answers the resume (while
            // its Redis connections come back, it refuses the upgrade or answers UNAVAILABLE).
            var after: [ServerFrame]?
            for _ in 0..<30 {
                let attempt = try? await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                    client.send(
                        RecoveryTests.resume(
                            conversation, from: first.last { $0.channel == "conversation:\(conversation)" }))
                    guard
                        let answer = await client.frames.first(
                            within: .seconds(10), where: { $0.correlationId == "resume" }),
                        answer.frame.type == "ACK"
                    else { return [] }
                    return [answer.frame]
                        + (await client.frames.collect(idle: .seconds(30)) { $0.type == FrameType.messageStreamEnd })
                }
                if let frames = attempt?.result, !frames.isEmpty {
                    after = frames
                    break
                }
                try await Task.sleep(for: .seconds(1))
            }
            let second = try #require(after)
            // Redis keeps its append-only file through a SIGKILL: the channel is recovered, not restarted.
            #expect(second.first { $0.correlationId == "resume" }?.data["recovered"]?.boolValue == true)
            RecoveryTests.expectCompleteStream(first + second)
            #expect(try await Self.deadLetterCounts(stack.binDirectory) == deadLettersBefore)
        }
    }

    /// A dead letter (here: an event for a user's channel, parked as an older version would have) is
    /// listed with why it was parked, shown, replayed to its origin topic where the notifier delivers it,
    /// and a second replay sends nothing.
    @Test func aDeadLetterIsListedShownAndReplayedExactlyOnce() async throws {
        try await ServiceProcesses.withStack { stack, url, authority in
            let bin = stack.binDirectory
            let brokers = ["--brokers", TestEnvironment.kafkaBrokers]
            let user = "dlq-dora-\(UUID().uuidString.prefix(6))"
            let token = try await authority.mint(user: user)
            let envelope = Envelope(
                routingKey: "user:\(user)", traceparent: TraceContext.newTraceparent(),
                source: EventSource(service: "test", instance: "dlq"),
                payload: ClientEvent(
                    channel: .user(user), frameType: FrameType.userNotification, data: ["note": "parked then replayed"])
            )
            var parked = try EventBus.message(envelope, topic: Topics.clientEvents.deadLetter)
            parked.headers += [
                KafkaHeader(
                    name: DeadLetter.errorHeader, string: "notifier 0.9 does not handle events of type client.event"),
                KafkaHeader(name: DeadLetter.kindHeader, string: "poison"),
            ]
            // Anything an earlier run left parked is replayed first, so this test starts from a clean slate.
            _ = try await CLITests.switchboard(
                ["dlq", "replay", Topics.clientEvents.name] + brokers, binDirectory: bin)
            let producer = try KafkaProducer(
                configuration: KafkaProducerConfiguration(client: TestEnvironment.kafkaClient),
                logger: TestEnvironment.logger)
            let report = try await producer.send(parked)
            await producer.shutdown()

            let listed = try await CLITests.switchboard(
                ["dlq", "list", Topics.clientEvents.name, "--json"] + brokers, binDirectory: bin)
            #expect(listed.status == 0, "stderr: \(listed.stderr)")
            let line = try #require(
                listed.stdout.split(separator: "\n").last { $0.contains("\"offset\":\(report.offset)") })
            #expect(
                line.contains("\"replayed\":false") && line.contains("notifier 0.9")
                    && line.contains("\"type\":\"client.event\""))
            let shown = try await CLITests.switchboard(
                ["dlq", "show", Topics.clientEvents.deadLetter.name, "\(report.offset)"] + brokers, binDirectory: bin)
            #expect(
                shown.status == 0 && shown.stdout.contains("parked then replayed"), "\(shown.stdout)\(shown.stderr)")

            let (received, _) = try await ChatClient.withConnection(url: url, token: token) { client -> ServerFrame? in
                let replayed = try? await CLITests.switchboard(
                    ["dlq", "replay", Topics.clientEvents.name] + brokers, binDirectory: bin)
                #expect(
                    replayed?.status == 0 && replayed?.stdout.contains("1 replayed") == true,
                    "\(String(describing: replayed))")
                while let frame = await client.frames.next(within: .seconds(15)) {
                    if frame.frame.type == FrameType.userNotification { return frame.frame }
                }
                return nil
            }
            #expect(received??.data["note"]?.stringValue == "parked then replayed")
            let again = try await CLITests.switchboard(
                ["dlq", "replay", Topics.clientEvents.name] + brokers, binDirectory: bin)
            #expect(again.status == 0 && again.stdout.contains("0 replayed"), "\(again.stdout)\(again.stderr)")
            let relisted = try await CLITests.switchboard(
                ["dlq", "list", Topics.clientEvents.name, "--json"] + brokers, binDirectory: bin)
            #expect(
                relisted.stdout.split(separator: "\n").last { $0.contains("\"offset\":\(report.offset)") }?.contains(
                    "\"replayed\":true") == true)
        }
    }

    /// Redis forgets who owns a conversation (here: the key is deleted, as a flushed or failed-over Redis
    /// would): the owner recorded in PostgreSQL still decides, so another user who now names the id is
    /// refused, and the owner goes on. The restored key expires unless used.
    @Test func aConversationWhoseOwnerKeyRedisLostStaysWithItsOwner() async throws {
        try await ServiceProcesses.withStack { _, url, authority in
            let alice = try await authority.mint(user: "owner-alice")
            let mallory = try await authority.mint(user: "owner-mallory")
            let conversation = "owned-\(UUID().uuidString.prefix(8))"
            let (reply, _) = try await ChatClient.withConnection(url: url, token: alice) { client -> ServerFrame? in
                client.send(RecoveryTests.send(conversation, "remember me"))
                return await client.frames.first(
                    within: .seconds(30), where: { $0.type == FrameType.messageStreamEnd })?.frame
            }
            #expect(reply != nil)
            let store = HistoryStore(
                configuration: try StoreConfiguration(url: TestEnvironment.postgresURL), logger: TestEnvironment.logger)
            let redis = RedisClient(
                configuration: RedisClientConfiguration(endpoint: TestEnvironment.redisEndpoint),
                logger: TestEnvironment.logger)
            let ownerKey = Keyspace.Conversation.owner(conversation)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await store.run() }
                defer { group.cancelAll() }
                #expect(
                    await eventually(timeout: .seconds(20)) {
                        (try? await store.owner(of: conversation)) == "owner-alice"
                    })
                _ = try await redis.send("DEL", RedisArgument(ownerKey))

                let denied = try await ChatFlowTests.followAndWrite(
                    conversation, as: mallory, url: url, content: "mine now")
                #expect(denied == ["PERMISSION_DENIED", "PERMISSION_DENIED"])
                #expect(try await redis.send("GET", RedisArgument(ownerKey)).string == "owner-alice")
                let ttl = try await redis.send("TTL", RedisArgument(ownerKey)).integer ?? -1
                #expect(ttl > 0 && ttl <= 7 * 24 * 3600)

                let (acknowledged, _) = try await ChatClient.withConnection(url: url, token: alice) {
                    client -> String? in
                    client.send(
                        ClientCommand(
                            id: "a1", type: ClientCommandType.subscribeConversation,
                            data: ["conversationId": .string(conversation)]))
                    return await client.frames.first(within: .seconds(10), where: { $0.correlationId == "a1" })?.frame
                        .type
                }
                #expect(acknowledged == "ACK")
            }
            await redis.close()
        }
    }
}
