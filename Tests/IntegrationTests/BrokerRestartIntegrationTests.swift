import Foundation
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// A broker of this test's own, restarted under a producer and a consumer: Tansu keeps its log in
/// memory, so it comes back without topics and without groups (issue 14, the broker-restart fault).
/// The services' `TopicKeeper` puts the topics back, the consumer is not "joined" while the group is
/// gone and joins again, and a message sent after the restart is consumed. Until librdkafka was
/// patched (deploy/patches/librdkafka), this test's process died of SIGSEGV right after the restart.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct BrokerRestartIntegrationTests {
    @Test func aRestartedBrokerGetsItsTopicsBackAndTheGroupRejoins() async throws {
        let broker = try await TestBroker()
        defer { broker.stop() }
        let address = broker.address

        let client = KafkaClientConfiguration(bootstrapServers: address, clientID: "restart-test")
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(client: client), logger: TestEnvironment.logger)
        let keeper = TopicKeeper(producer: producer, logger: TestEnvironment.logger)
        await keeper.check()
        await keeper.check()
        #expect(keeper.isReady)

        var configuration = KafkaConsumerConfiguration(client: client, groupID: "restart-test")
        configuration.sessionTimeoutMilliseconds = 6000
        let consumer = try KafkaConsumer(
            configuration: configuration, topics: [Topics.clientEvents.name], logger: TestEnvironment.logger)
        let received = Locked<[String]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await withDiscardingTaskGroup { partitions in
                    for await partition in consumer.partitions {
                        partitions.addTask {
                            for await message in partition {
                                received.withLock { $0.append(String(decoding: message.value, as: UTF8.self)) }
                                try? consumer.markProcessed(message)
                            }
                        }
                    }
                }
            }
            #expect(await eventually(timeout: .seconds(30)) { consumer.hasJoinedGroup })

            // The broker dies and comes back empty.
            try await broker.restart()
            #expect(
                await eventually(timeout: .seconds(15)) {
                    (try? await producer.partitionCounts(of: [Topics.clientEvents.name]))?.isEmpty == true
                }, "the restarted broker still has the topic: this test no longer restarts anything")

            // The keeper's next look finds them missing (not ready), creates them, and the one after is ready.
            await keeper.check()
            #expect(!keeper.isReady)
            #expect(
                await eventually(timeout: .seconds(15)) {
                    await keeper.check()
                    return keeper.isReady
                })
            #expect(
                await eventually(timeout: .seconds(30)) { !consumer.hasJoinedGroup },
                "readiness stayed true for a forgotten group")
            #expect(await eventually(timeout: .seconds(45)) { consumer.hasJoinedGroup })
            // The producer from before the restart sends again: the keeper renewed it when it found the
            // topics gone (the emptied Tansu answers its old producer id UNKNOWN_PRODUCER_ID however often
            // it is bumped; docs/reliability.md). A message it had in flight is purged with a retriable error.
            let sent = try await producer.send(
                KafkaOutgoingMessage(topic: Topics.clientEvents.name, key: "k", value: Array("after".utf8)))
            #expect(sent.topic == Topics.clientEvents.name)
            #expect(await eventually(timeout: .seconds(20)) { received.withLock { $0 }.contains("after") })
            await consumer.close()
            try await group.waitForAll()
        }
        await producer.shutdown()
    }

    /// A producer whose own services never saw the topics missing (another service's keeper put them
    /// back first), as the gateway's was: the restarted broker refuses its producer id, librdkafka bumps
    /// the epoch again and again, and the producer renews itself from its statistics
    /// (`ForgottenProducerIdWatch`) instead of letting every send time out after 30 s.
    @Test func aProducerTheBrokerForgotRenewsItselfWithoutATopicCheck() async throws {
        let broker = try await TestBroker()
        defer { broker.stop() }
        let (_, admin, producer) = try await Self.producerThatSentOnce(on: broker, clientID: "forgotten-producer")

        try await broker.restart()
        // Someone else's keeper puts the topic back; this producer's owner never looks.
        #expect(await Self.putTheTopicBack(admin))
        let started = ContinuousClock.now
        let sent = try await producer.send(
            KafkaOutgoingMessage(topic: Topics.clientEvents.name, key: "k", value: Array("after".utf8)))
        let took = ContinuousClock.now - started
        #expect(sent.topic == Topics.clientEvents.name)
        // Statistics every 2 s: renewed within a few of them, well inside the 30 s message timeout.
        #expect(took < .seconds(15), "delivered after \(took)")
        await producer.shutdown()
        await admin.shutdown()
    }

    /// A producer idle through the restart: the emptied broker acknowledged its next sends and kept
    /// nothing (a workflow-runner's 29 run events in a stack run), with no error and no epoch bump. It
    /// renews when every broker connection drops, so what it sends after the restart is on the topic.
    @Test func anIdleProducerRenewsWhenEveryBrokerConnectionDrops() async throws {
        let broker = try await TestBroker()
        defer { broker.stop() }
        let (client, admin, producer) = try await Self.producerThatSentOnce(on: broker, clientID: "idle-producer")
        // Idle past a statistics report (every 2 s), which tells the producer it holds an id.
        try await Task.sleep(for: .seconds(3))

        try await broker.restart()
        #expect(await Self.putTheTopicBack(admin))
        _ = try await producer.send(
            KafkaOutgoingMessage(topic: Topics.clientEvents.name, key: "k", value: Array("after".utf8)))

        let reader = try TopicReader(client: client, group: "idle-producer-reader")
        let received = reader.received
        #expect(
            await eventually(timeout: .seconds(45)) { received.withLock { $0 }.contains("after") },
            "acknowledged but not on the topic: \(received.withLock { $0 })")
        await reader.stop()
        await producer.shutdown()
        await admin.shutdown()
    }

    /// A producer busy through the restart (a message waiting for a topic that does not exist yet). The
    /// restarted broker numbers producer ids from 1 again, so the id it held goes to a new producer, at
    /// the same epoch 0; once that one has sent more to a partition, this one's next send there is
    /// answered DUPLICATE_SEQUENCE_NUMBER, which librdkafka reports as delivered: lost without an error
    /// (one conversation in 50 unanswered after a restart, now and then). It renews when every broker
    /// connection drops, busy or not, so what it sends after the restart is on the topic.
    @Test func aBusyProducerRenewsTooSoANewProducerWithItsOldIdCannotSwallowItsSends() async throws {
        let broker = try await TestBroker()
        defer { broker.stop() }
        // Ids from the first broker: 1 for the admin, 2 for the producer under test.
        let (client, admin, producer) = try await Self.producerThatSentOnce(on: broker, clientID: "busy-producer")
        await admin.shutdown()
        try await Task.sleep(for: .seconds(3))  // a statistics report: the producer knows its id
        let waiting = Task {
            try? await producer.send(KafkaOutgoingMessage(topic: "sb.test.not-yet", key: "k", value: Array("w".utf8)))
        }
        try await Task.sleep(for: .milliseconds(300))

        try await broker.restart()
        // Two new producers take ids 1 and 2 from the restarted broker; the second fills the partition's
        // sequence for id 2 past the producer under test's.
        var others: [KafkaProducer] = []
        for name in ["first", "second"] {
            let other = try KafkaProducer(
                configuration: KafkaProducerConfiguration(
                    client: KafkaClientConfiguration(bootstrapServers: broker.address, clientID: name)),
                logger: TestEnvironment.logger)
            if others.isEmpty {
                #expect(await Self.putTheTopicBack(other))
                // The waiting message's topic too, so it is delivered rather than waited out at shutdown.
                try await other.createTopics([(name: "sb.test.not-yet", partitions: 1)])
            }
            for index in 0..<5 {
                _ = try await other.send(
                    KafkaOutgoingMessage(
                        topic: Topics.clientEvents.name, key: "k", value: Array("\(name) \(index)".utf8)))
            }
            others.append(other)
        }
        _ = try await producer.send(
            KafkaOutgoingMessage(topic: Topics.clientEvents.name, key: "k", value: Array("after".utf8)))

        let reader = try TopicReader(client: client, group: "busy-producer-reader")
        let received = reader.received
        #expect(
            await eventually(timeout: .seconds(45)) { received.withLock { $0 }.contains("second 4") },
            "the other producers' messages: \(received.withLock { $0 })")
        #expect(
            await eventually(timeout: .seconds(5)) { received.withLock { $0 }.contains("after") },
            "acknowledged but not on the topic: \(received.withLock { $0 })")
        await reader.stop()
        await producer.shutdown()
        _ = await waiting.value
        for other in others { await other.shutdown() }
    }

    static let topic = [(name: Topics.clientEvents.name, partitions: Topics.clientEvents.partitions)]

    /// A group of its own reading the client-events topic from its start: what is on it, as text.
    struct TopicReader {
        let received: Locked<[String]>
        private let consumer: KafkaConsumer
        private let reading: Task<Void, Never>

        init(client: KafkaClientConfiguration, group: String) throws {
            let consumer = try KafkaConsumer(
                configuration: KafkaConsumerConfiguration(client: client, groupID: group),
                topics: [Topics.clientEvents.name], logger: TestEnvironment.logger)
            let received = Locked<[String]>([])
            self.received = received
            self.consumer = consumer
            reading = Task {
                await withDiscardingTaskGroup { partitions in
                    for await partition in consumer.partitions {
                        partitions.addTask {
                            for await message in partition {
                                received.withLock { $0.append(String(decoding: message.value, as: UTF8.self)) }
                            }
                        }
                    }
                }
            }
        }

        func stop() async {
            await consumer.close()
            await reading.value
        }
    }

    /// The client-events topic on `broker`, an admin client, and the producer under test, which has sent
    /// one message there (so it holds a producer id).
    static func producerThatSentOnce(on broker: TestBroker, clientID: String) async throws -> (
        client: KafkaClientConfiguration, admin: KafkaProducer, producer: KafkaProducer
    ) {
        let client = KafkaClientConfiguration(bootstrapServers: broker.address, clientID: clientID)
        let admin = try KafkaProducer(
            configuration: KafkaProducerConfiguration(client: client), logger: TestEnvironment.logger)
        try await admin.createTopics(topic)
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(client: client), logger: TestEnvironment.logger)
        _ = try await producer.send(
            KafkaOutgoingMessage(topic: Topics.clientEvents.name, key: "k", value: Array("before".utf8)))
        return (client, admin, producer)
    }

    /// After the broker came back empty: the topic created again, as another service's keeper would.
    static func putTheTopicBack(_ admin: KafkaProducer) async -> Bool {
        await eventually(timeout: .seconds(15)) {
            guard (try? await admin.createTopics(topic)) != nil else { return false }
            return (try? await admin.partitionCounts(of: [Topics.clientEvents.name]))?.isEmpty == false
        }
    }

}
