import Foundation
import SwitchboardKafka
import SwitchboardTestSupport
import Testing

/// Against librdkafka's mock cluster: what a real broker cannot be made to do.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct KafkaMockClusterTests {
    let logger = TestEnvironment.logger

    func producer(_ cluster: KafkaMockCluster, messageTimeoutMilliseconds: Int = 30_000) throws -> KafkaProducer {
        var configuration = KafkaProducerConfiguration(
            client: KafkaClientConfiguration(bootstrapServers: cluster.bootstrapServers, clientID: "mock-\(UUID())"))
        configuration.messageTimeoutMilliseconds = messageTimeoutMilliseconds
        return try KafkaProducer(configuration: configuration, logger: logger)
    }

    @Test func aDeliveryRefusedThroughEveryRetryFailsItsSender() async throws {
        let cluster = try KafkaMockCluster(logger: logger)
        try cluster.createTopic("mock.refused", partitions: 1)
        let producer = try producer(cluster, messageTimeoutMilliseconds: 2000)
        let before = try await producer.send(
            KafkaOutgoingMessage(topic: "mock.refused", key: "k", value: Array("before".utf8)))
        #expect(before.offset == 0)
        cluster.failProduceRequests(10_000, with: .notEnoughReplicas)
        let started = ContinuousClock.now
        do {
            let report = try await producer.send(
                KafkaOutgoingMessage(topic: "mock.refused", key: "k", value: Array("refused".utf8)))
            Issue.record("delivered although every attempt was refused: \(report)")
        } catch let error as KafkaError {
            // librdkafka retried until the message timed out, and said so.
            #expect(error.code == .timedOut, "\(error)")
            #expect(ContinuousClock.now - started >= .milliseconds(1500))
        }
        await producer.shutdown(timeout: .seconds(1))
        cluster.shutdown()
    }

    @Test func aSendWhileTheBrokerIsAwayIsDeliveredWhenItIsBack() async throws {
        let cluster = try KafkaMockCluster(logger: logger)
        try cluster.createTopic("mock.away", partitions: 1)
        let producer = try producer(cluster)
        _ = try await producer.send(KafkaOutgoingMessage(topic: "mock.away", key: "k", value: Array("before".utf8)))
        try cluster.setBrokersUp(false)
        async let delivered = producer.send(
            KafkaOutgoingMessage(topic: "mock.away", key: "k", value: Array("while away".utf8)))
        try await Task.sleep(for: .seconds(2))
        try cluster.setBrokersUp(true)
        let report = try await delivered
        #expect(report.topic == "mock.away" && report.offset == 1)
        await producer.shutdown()
        cluster.shutdown()
    }
}
