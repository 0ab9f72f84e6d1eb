/// A position in a trace: the W3C `traceparent` a span or a message carries.
public struct SpanContext: Sendable, Hashable {
    /// 32 lower-case hex digits.
    public var traceID: String
    /// 16 lower-case hex digits.
    public var spanID: String

    public init(traceID: String, spanID: String) {
        self.traceID = traceID
        self.spanID = spanID
    }

    /// Reads `00-<trace id>-<span id>-<flags>`; nil for anything else.
    public init?(traceparent: String) {
        let parts = traceparent.split(separator: "-")
        guard parts.count == 4, parts[1].count == 32, parts[2].count == 16,
            parts[1].allSatisfy(\.isHexDigit), parts[2].allSatisfy(\.isHexDigit)
        else { return nil }
        self.init(traceID: String(parts[1]), spanID: String(parts[2]))
    }

    public var traceparent: String { "00-\(traceID)-\(spanID)-01" }
}

/// OpenTelemetry's span kinds, numbered as OTLP numbers them.
public enum SpanKind: Int, Sendable {
    case `internal` = 1
    case server = 2
    case client = 3
    case producer = 4
    case consumer = 5
}

/// A span attribute's value (OTLP `AnyValue`, the kinds Switchboard uses).
public enum SpanAttribute: Sendable, Equatable, ExpressibleByStringLiteral {
    case string(String)
    case int(Int64)
    case bool(Bool)

    public init(stringLiteral value: String) { self = .string(value) }
}

/// A span that has ended, ready to export.
public struct FinishedSpan: Sendable {
    public var context: SpanContext
    public var parentSpanID: String?
    public var name: String
    public var kind: SpanKind
    /// Nanoseconds since the Unix epoch.
    public var start: UInt64
    public var end: UInt64
    public var attributes: [(key: String, value: SpanAttribute)]
    /// The error's description when the span's work failed.
    public var error: String?
}
