/// A position in a trace: the W3C `traceparent` a span or a message carries.
public struct SpanContext: Sendable, Hashable {
    /// 32 lower-case hex digits.
    public var traceID: String
    /// 16 lower-case hex digits.
    public var spanID: String
    /// The trace-flags' sampled bit: whether the trace's spans are recorded (the sampler's decision at
    /// its root, which every hop keeps).
    public var sampled: Bool

    public init(traceID: String, spanID: String, sampled: Bool = true) {
        self.traceID = traceID
        self.spanID = spanID
        self.sampled = sampled
    }

    /// Reads `00-<trace id>-<span id>-<flags>`; nil for anything else.
    public init?(traceparent: String) {
        let parts = traceparent.split(separator: "-")
        guard parts.count == 4, parts[1].count == 32, parts[2].count == 16, parts[3].count == 2,
            parts[1].allSatisfy(\.isHexDigit), parts[2].allSatisfy(\.isHexDigit),
            let flags = UInt8(parts[3], radix: 16)
        else { return nil }
        self.init(traceID: String(parts[1]), spanID: String(parts[2]), sampled: flags & 1 == 1)
    }

    public var traceparent: String { "00-\(traceID)-\(spanID)-\(sampled ? "01" : "00")" }
}

/// OpenTelemetry's span kinds (Switchboard's own name for them, so that the services need not import
/// swift-distributed-tracing).
public enum SpanRole: Sendable {
    case `internal`
    case server
    case client
    case producer
    case consumer
}

/// A span attribute's value (the kinds Switchboard uses).
public enum SpanAttribute: Sendable, Equatable, ExpressibleByStringLiteral {
    case string(String)
    case int(Int64)
    case bool(Bool)

    public init(stringLiteral value: String) { self = .string(value) }
}
