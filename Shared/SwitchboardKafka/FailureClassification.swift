import Metrics
import Synchronization
import SwitchboardContracts

/// What a handler's failure says about the message, and so what the processor does with it.
public enum FailureKind: Sendable, Hashable, CustomStringConvertible {
    /// The message itself is bad (undecodable, invalid, a type nobody handles): no retry can help, so it
    /// goes to the dead-letter topic at once.
    case poison
    /// Might pass on another try: retried with backoff, then dead-lettered.
    case transient
    /// A dependency (Redis, PostgreSQL, the broker) cannot be reached: the partition waits and retries for
    /// as long as it is down, and the message is never dead-lettered for it.
    case dependencyUnavailable

    public var description: String {
        switch self {
        case .poison: "poison"
        case .transient: "transient"
        case .dependencyUnavailable: "dependency-unavailable"
        }
    }
}

/// An error that says how it must be treated; errors that do not conform count as `.transient`
/// (decoding errors as `.poison`).
public protocol RetryClassifiedError: Error {
    var failureKind: FailureKind { get }
}

public enum FailureClassifier {
    public static func kind(of error: any Error) -> FailureKind {
        if let classified = error as? any RetryClassifiedError { return classified.failureKind }
        if error is DecodingError || error is EncodingError { return .poison }
        return .transient
    }
}

extension KafkaError: RetryClassifiedError {
    /// A producer that cannot reach the broker waits for it; a refusal of this message (too large, a
    /// topic that does not exist) is the message's own fault.
    public var failureKind: FailureKind {
        // librdkafka's retriable errors (transport, queue full, timeouts) and our own timeouts.
        if isRetriable || code == .timedOut { return .dependencyUnavailable }
        return .transient
    }
}

/// How many partitions of this process are waiting for a dependency right now: `/readyz` reports not
/// ready while any is, and `sb_kafka_partitions_waiting` shows it.
public final class DependencyWaits: Sendable {
    public static let shared = DependencyWaits()

    private let waiting = Atomic<Int>(0)
    private let gauge = KafkaMetrics.partitionsWaiting

    public var isWaiting: Bool { waiting.load(ordering: .relaxed) > 0 }

    func begin() { gauge.record(waiting.wrappingAdd(1, ordering: .relaxed).newValue) }
    func end() { gauge.record(waiting.wrappingSubtract(1, ordering: .relaxed).newValue) }
}

/// The headers a dead-lettered message carries, so `switchboard dlq` can show why and replay it where
/// it came from.
public enum DeadLetter {
    public static let errorHeader = "sb-dlq-error"
    /// `topic/partition/offset` of the original message.
    public static let originHeader = "sb-dlq-origin"
    public static let attemptsHeader = "sb-dlq-attempts"
    public static let kindHeader = "sb-dlq-kind"
    /// On a replayed message: the dead-letter `topic/partition/offset` it was replayed from.
    public static let replayedFromHeader = "sb-replayed-from"

    public static func message(for message: KafkaConsumerMessage, error: any Error, attempts: Int)
        -> KafkaOutgoingMessage
    {
        var headers = message.headers.filter { !$0.name.hasPrefix("sb-dlq-") }
        headers.append(KafkaHeader(name: errorHeader, string: "\(error)"))
        headers.append(
            KafkaHeader(name: originHeader, string: "\(message.topic)/\(message.partition)/\(message.offset)"))
        headers.append(KafkaHeader(name: attemptsHeader, string: "\(attempts)"))
        headers.append(KafkaHeader(name: kindHeader, string: FailureClassifier.kind(of: error).description))
        var outgoing = KafkaOutgoingMessage(
            topic: TopicSpec.deadLetterName(of: message.topic), key: nil, value: message.value, headers: headers)
        outgoing.key = message.key
        return outgoing
    }
}
