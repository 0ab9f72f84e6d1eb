import Logging

/// How far one partition's consumer group is behind.
public struct PartitionLag: Sendable, Hashable, Codable {
    public var topic: String
    public var partition: Int32
    /// The next offset the group will read; nil when it never committed on this partition.
    public var committed: Int64?
    /// The oldest offset the broker still keeps.
    public var lowWatermark: Int64
    /// The next offset the broker will write.
    public var highWatermark: Int64
    /// Messages not consumed yet. Without a commit the group starts from the oldest retained message
    /// (`auto.offset.reset=earliest`), so everything retained counts.
    public var lag: Int64

    public init(topic: String, partition: Int32, committed: Int64?, lowWatermark: Int64, highWatermark: Int64) {
        self.topic = topic
        self.partition = partition
        self.committed = committed
        self.lowWatermark = lowWatermark
        self.highWatermark = highWatermark
        lag = max(0, highWatermark - (committed ?? lowWatermark))
    }
}

/// A consumer group's lag over the topics it consumes.
public struct ConsumerGroupLag: Sendable, Hashable, Codable {
    public var group: String
    public var topics: [String]
    public var partitions: [PartitionLag]

    public init(group: String, topics: [String], partitions: [PartitionLag]) {
        self.group = group
        self.topics = topics
        self.partitions = partitions
    }

    public var totalLag: Int64 { partitions.reduce(0) { $0 + $1.lag } }
    /// Partitions the group has never committed on (new, or not consumed yet).
    public var uncommittedPartitions: Int { partitions.filter { $0.committed == nil }.count }
}

/// Reads consumer groups' committed offsets and the partitions' high watermarks: lag without joining
/// the groups, so measuring never triggers a rebalance.
public enum KafkaGroupLag {
    /// One entry per group, in the order given; topics that do not exist yet are left out.
    public static func measure(
        client configuration: KafkaClientConfiguration, groups: [(group: String, topics: [String])],
        timeout: Duration = .seconds(5), logger: Logger
    ) async throws -> [ConsumerGroupLag] {
        let timeoutMilliseconds = Int32(
            timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let clientProperties = configuration.properties(with: ["socket.timeout.ms": String(timeoutMilliseconds)])
        // Admin requests and watermark queries block: all on the blocking executor, one handle throughout.
        return try await BlockingExecutor.shared.run {
            let client = try RDKafkaClient.make(kind: .producer, properties: clientProperties, logger: logger)
            defer { client.destroy() }
            let allTopics = Array(Set(groups.flatMap(\.topics))).sorted()
            let counts = try client.partitionCounts(of: allTopics, timeoutMilliseconds: timeoutMilliseconds)
            var watermarks: [TopicPartition: (low: Int64, high: Int64)] = [:]
            for topic in allTopics {
                for index in 0..<Int32(counts[topic] ?? 0) {
                    let partition = TopicPartition(topic: topic, partition: index)
                    watermarks[partition] = try client.watermarks(
                        of: partition, timeoutMilliseconds: timeoutMilliseconds)
                }
            }
            return try groups.map { entry in
                let partitions = entry.topics.flatMap { topic in
                    (0..<Int32(counts[topic] ?? 0)).map { TopicPartition(topic: topic, partition: $0) }
                }
                let committed = try client.committedOffsets(
                    group: entry.group, partitions: partitions, timeoutMilliseconds: timeoutMilliseconds)
                return ConsumerGroupLag(
                    group: entry.group, topics: entry.topics,
                    partitions: partitions.map { partition in
                        let marks = watermarks[partition] ?? (0, 0)
                        return PartitionLag(
                            topic: partition.topic, partition: partition.partition,
                            committed: committed[partition] ?? nil,
                            lowWatermark: marks.low, highWatermark: marks.high)
                    })
            }
        }
    }
}
