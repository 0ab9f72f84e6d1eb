import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// A payload that travels on the bus. Its `eventType` is a stable dotted name (`chat.message.submitted`);
/// bump `schemaVersion` when a field changes meaning, and keep decoding the old version.
public protocol EventPayload: Codable, Sendable {
    static var eventType: String { get }
    static var schemaVersion: Int { get }
}

extension EventPayload {
    public static var schemaVersion: Int { 1 }
}

/// Which process published an event.
public struct EventSource: Codable, Sendable, Hashable {
    public var service: String
    public var instance: String

    public init(service: String, instance: String) {
        self.service = service
        self.instance = instance
    }
}

/// The one envelope of every message on the bus. JSON on the wire so operators can read topics with any
/// Kafka tool; the Kafka message key is `routingKey` and `type` and `traceparent` are also Kafka headers.
public struct Envelope<Payload: EventPayload>: Codable, Sendable {
    /// The idempotency key: a consumer that sees an id twice acts once.
    public var id: UUID
    public var type: String
    public var schemaVersion: Int
    /// Microseconds since the Unix epoch when the event was created.
    public var time: Int64
    /// Conversation id, device session id or workflow run id: events with one key keep their order.
    public var routingKey: String
    /// W3C trace context (`00-<trace id>-<span id>-01`).
    public var traceparent: String
    public var source: EventSource
    public var payload: Payload

    public init(
        id: UUID = UUID(), time: Int64 = Clock.epochMicroseconds(), routingKey: String,
        traceparent: String = TraceContext.newTraceparent(), source: EventSource, payload: Payload
    ) {
        self.id = id
        self.type = Payload.eventType
        self.schemaVersion = Payload.schemaVersion
        self.time = time
        self.routingKey = routingKey
        self.traceparent = traceparent
        self.source = source
        self.payload = payload
    }
}

/// Everything of an envelope but its payload: enough to route, log, de-duplicate and pick the payload type.
public struct EnvelopeHeader: Codable, Sendable {
    public var id: UUID
    public var type: String
    public var schemaVersion: Int
    public var time: Int64
    public var routingKey: String
    public var traceparent: String
    public var source: EventSource
}

public struct ContractError: Error, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value { case malformedEnvelope, unexpectedType, unsupportedSchemaVersion }
        private let value: Value
        public static let malformedEnvelope = Code(value: .malformedEnvelope)
        public static let unexpectedType = Code(value: .unexpectedType)
        public static let unsupportedSchemaVersion = Code(value: .unsupportedSchemaVersion)
        public var description: String { "\(value)" }
    }

    public var code: Code
    public var reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { "\(code): \(reason)" }
}

/// Encodes and decodes envelopes. One shared coder keeps key order stable for readers of the topics.
public enum EnvelopeCodec {
    public static func encode<P: EventPayload>(_ envelope: Envelope<P>) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(envelope))
    }

    public static func header(from bytes: some Collection<UInt8>) throws -> EnvelopeHeader {
        do {
            return try JSONDecoder().decode(EnvelopeHeader.self, from: Data(bytes))
        } catch {
            throw ContractError(.malformedEnvelope, "cannot read the envelope: \(error)")
        }
    }

    /// Decodes an envelope whose type must be `P.eventType`.
    public static func decode<P: EventPayload>(_: P.Type, from bytes: some Collection<UInt8>) throws -> Envelope<P> {
        let data = Data(bytes)
        let envelope: Envelope<P>
        do {
            envelope = try JSONDecoder().decode(Envelope<P>.self, from: data)
        } catch {
            throw ContractError(.malformedEnvelope, "cannot decode \(P.eventType): \(error)")
        }
        guard envelope.type == P.eventType else {
            throw ContractError(.unexpectedType, "expected \(P.eventType), got \(envelope.type)")
        }
        guard envelope.schemaVersion <= P.schemaVersion else {
            throw ContractError(
                .unsupportedSchemaVersion, "\(P.eventType) v\(envelope.schemaVersion) is newer than v\(P.schemaVersion)"
            )
        }
        return envelope
    }
}

public enum Clock {
    public static func epochMicroseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
    }

    public static func epochMilliseconds() -> Int64 { epochMicroseconds() / 1000 }
}

/// W3C trace context helpers: a new trace for each user action (the spans of a trace are made by
/// swift-distributed-tracing's tracer, `SwitchboardTracing`).
public enum TraceContext {
    public static func newTraceparent() -> String {
        "00-\(randomHex(bytes: 16))-\(randomHex(bytes: 8))-01"
    }

    public static func traceID(of traceparent: String) -> String? {
        let parts = traceparent.split(separator: "-")
        return parts.count == 4 ? String(parts[1]) : nil
    }

    /// Lower-case hex of `bytes` random bytes: eight bytes per draw from the system generator (this runs
    /// for every event; a draw per byte cost a `getrandom` call each).
    static func randomHex(bytes: Int) -> String {
        let digits: StaticString = "0123456789abcdef"
        var generator = SystemRandomNumberGenerator()
        return String(unsafeUninitializedCapacity: bytes * 2) { output in
            digits.withUTF8Buffer { digits in
                var written = 0
                while written < bytes * 2 {
                    var word = generator.next()
                    for _ in 0..<min(16, bytes * 2 - written) {
                        output[written] = digits[Int(word & 0xF)]
                        word >>= 4
                        written += 1
                    }
                }
            }
            return bytes * 2
        }
    }
}
