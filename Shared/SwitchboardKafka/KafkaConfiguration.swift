/// Settings shared by producers and consumers.
public struct KafkaClientConfiguration: Sendable {
    /// Comma-separated host:port list.
    public var bootstrapServers: String = "127.0.0.1:9092"
    public var clientID: String = "switchboard"
    /// Extra librdkafka properties, applied last (see librdkafka's CONFIGURATION.md).
    public var extraProperties: [String: String] = [:]
    /// librdkafka's own tracing contexts (its `debug` property, e.g. "consumer,fetch,cgrp"), for
    /// operators chasing a broker problem; nil or empty: none.
    public var debug: String?

    public init(bootstrapServers: String = "127.0.0.1:9092", clientID: String = "switchboard") {
        self.bootstrapServers = bootstrapServers
        self.clientID = clientID
    }

    /// A client's own properties with the brokers, the client id and `debug`, and `extraProperties` over all.
    func properties(with own: [String: String]) -> [String: String] {
        var properties = own
        properties["bootstrap.servers"] = bootstrapServers
        properties["client.id"] = clientID
        if let debug, !debug.isEmpty { properties["debug"] = debug }
        properties.merge(extraProperties) { _, extra in extra }
        return properties
    }
}

public struct KafkaProducerConfiguration: Sendable {
    public var client: KafkaClientConfiguration
    /// How long librdkafka waits to fill a batch. Small: this bus carries tokens a user is watching.
    public var lingerMilliseconds: Int = 1
    /// How long a message may wait for delivery before its report is a failure.
    public var messageTimeoutMilliseconds: Int = 30_000
    /// How often librdkafka reports the producer's statistics, which tell whether the broker keeps
    /// refusing the producer's id (`ForgottenProducerIdWatch`).
    public var statisticsIntervalMilliseconds: Int = 2_000

    public init(client: KafkaClientConfiguration) {
        self.client = client
    }

    /// The librdkafka form: idempotent, acks=all, so a retried send never duplicates or reorders.
    var properties: [String: String] {
        client.properties(with: [
            "enable.idempotence": "true",
            "acks": "all",
            // Topics are created by TopicKeeper with their partition counts. librdkafka's producer default
            // lets a send create a missing topic with the broker's default count (Tansu: 4): after a broker
            // restart the 8-partition topics came back with 4, and consumers saw partitions vanish.
            "allow.auto.create.topics": "false",
            "linger.ms": String(lingerMilliseconds),
            "message.timeout.ms": String(messageTimeoutMilliseconds),
            "socket.nagle.disable": "true",
            "statistics.interval.ms": String(statisticsIntervalMilliseconds),
            "topic.metadata.refresh.interval.ms": "10000",
        ])
    }
}

public struct KafkaConsumerConfiguration: Sendable {
    public var client: KafkaClientConfiguration
    public var groupID: String
    /// Buffered messages per partition above which the partition is paused until the handler catches up.
    public var maxBufferedMessagesPerPartition: Int = 1000
    public var sessionTimeoutMilliseconds: Int = 10_000
    public var heartbeatIntervalMilliseconds: Int = 1_000
    /// How long a fetch waits at the broker for new data: the floor of bus latency when idle, and the
    /// rate at which an idle consumer sends fetches (the broker's idle work).
    public var fetchWaitMaxMilliseconds: Int = 10
    /// Bytes a fetch waits for (up to `fetchWaitMaxMilliseconds`) before it is answered: above 1, a
    /// busy consumer gets fewer, larger fetches.
    public var fetchMinBytes: Int = 1
    public var autoCommitIntervalMilliseconds: Int = 250
    /// Where a group with no committed offset starts: the oldest message (services: nothing is missed)
    /// or the newest (operators tailing a topic).
    public var startFromLatest = false

    public init(client: KafkaClientConfiguration, groupID: String) {
        self.client = client
        self.groupID = groupID
    }

    /// Auto-commit commits only offsets the application stored, and it stores one only after its handler
    /// succeeded: at-least-once without a commit round trip per message.
    var properties: [String: String] {
        client.properties(with: [
            "group.id": groupID,
            "enable.auto.commit": "true",
            "enable.auto.offset.store": "false",
            "auto.commit.interval.ms": String(autoCommitIntervalMilliseconds),
            "auto.offset.reset": startFromLatest ? "latest" : "earliest",
            "session.timeout.ms": String(sessionTimeoutMilliseconds),
            "heartbeat.interval.ms": String(heartbeatIntervalMilliseconds),
            "fetch.wait.max.ms": String(fetchWaitMaxMilliseconds),
            "fetch.min.bytes": String(fetchMinBytes),
            // The poll thread polls continuously, so a member that stops polling is dead: let the
            // group move on after 30 s instead of the 5-minute default.
            "max.poll.interval.ms": "30000",
            "fetch.error.backoff.ms": "50",
            "socket.nagle.disable": "true",
            "topic.metadata.refresh.interval.ms": "10000",
        ])
    }
}
