public struct KafkaError: Error, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value {
            case configuration, broker, allBrokersDown, queueFull, timedOut, notAssigned, shutdown, renewed
        }
        private let value: Value
        public static let configuration = Code(value: .configuration)
        public static let broker = Code(value: .broker)
        /// Every connection to the brokers dropped (librdkafka's `_ALL_BROKERS_DOWN`).
        public static let allBrokersDown = Code(value: .allBrokersDown)
        public static let queueFull = Code(value: .queueFull)
        public static let timedOut = Code(value: .timedOut)
        /// The partition was revoked from this consumer; the message will be read again by its new owner.
        public static let notAssigned = Code(value: .notAssigned)
        public static let shutdown = Code(value: .shutdown)
        /// The producer started over with a new librdkafka handle before the message was delivered.
        public static let renewed = Code(value: .renewed)
        public var description: String { "\(value)" }
    }

    public var code: Code
    public var reason: String
    /// Whether trying the same operation again can succeed.
    public var isRetriable: Bool
    public var file: String
    public var line: Int

    public init(_ code: Code, _ reason: String, isRetriable: Bool = false, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.isRetriable = isRetriable
        self.file = file
        self.line = line
    }

    public var description: String { "KafkaError(\(code)): \(reason)" }
}

public struct KafkaHeader: Sendable, Hashable {
    public var name: String
    public var value: [UInt8]

    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }

    public init(name: String, string: String) {
        self.init(name: name, value: Array(string.utf8))
    }

    public var stringValue: String { String(decoding: value, as: UTF8.self) }
}

public struct TopicPartition: Sendable, Hashable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}

public struct DeliveryReport: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
}

public struct KafkaConsumerMessage: Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [KafkaHeader]
    public var timestampMilliseconds: Int64?

    public init(
        topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8], headers: [KafkaHeader],
        timestampMilliseconds: Int64?
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestampMilliseconds = timestampMilliseconds
    }

    public var topicPartition: TopicPartition { TopicPartition(topic: topic, partition: partition) }

    public func header(_ name: String) -> String? {
        headers.first(where: { $0.name == name })?.stringValue
    }

    public var keyString: String? { key.map { String(decoding: $0, as: UTF8.self) } }
}

public struct KafkaOutgoingMessage: Sendable {
    public var topic: String
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [KafkaHeader]

    public init(topic: String, key: String?, value: [UInt8], headers: [KafkaHeader] = []) {
        self.topic = topic
        self.key = key.map { Array($0.utf8) }
        self.value = value
        self.headers = headers
    }
}
