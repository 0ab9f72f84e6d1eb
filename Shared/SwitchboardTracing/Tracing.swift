import Foundation
import Instrumentation
import SwitchboardContracts
import Synchronization
import Tracing

/// The process's tracer: off until `bootstrap` is given one (swift-otel's, when SWITCHBOARD_OTEL_ENDPOINT
/// is set), and then every span made through it is exported. Spans are made through
/// swift-distributed-tracing's `Tracer`; the current span travels with the task (its
/// `InstrumentationContext`), and across services in each Kafka message's `traceparent` header.
public enum Tracing {
    private static let tracer = Mutex<(any Tracer)?>(nil)
    private static let enabled = Atomic<Bool>(false)

    public static func bootstrap(_ tracer: any Tracer) {
        self.tracer.withLock { $0 = tracer }
        enabled.store(true, ordering: .releasing)
    }

    public static var isEnabled: Bool { enabled.load(ordering: .acquiring) }

    static var activeTracer: (any Tracer)? { isEnabled ? tracer.withLock { $0 } : nil }

    /// The span a new span descends from.
    public enum Parent: Sendable {
        /// The task's current span; a new trace when there is none.
        case current
        /// None: the span begins a trace.
        case root
        /// A span of another process, named by a message's or an event's `traceparent`; a new trace for nil.
        case remote(SpanContext?)
    }

    /// The task's current span; nil outside any span and when tracing is off.
    public static var current: SpanContext? {
        guard let tracer = activeTracer, let context = InstrumentationContext.current else { return nil }
        return spanContext(of: context, tracer: tracer)
    }

    /// Runs `body` in a new span, which is the current span inside `body`. `outcome` adds attributes
    /// that depend on how `body` ended; an error thrown by `body` is the span's error status.
    @discardableResult
    public static func withSpan<T>(
        _ name: String, kind: SpanRole = .internal, parent: Parent = .current,
        attributes: @autoclosure () -> [(key: String, value: SpanAttribute)] = [],
        outcome: ((Result<T, any Error>) -> [(key: String, value: SpanAttribute)])? = nil,
        _ body: () async throws -> T
    ) async rethrows -> T {
        guard let span = OpenSpan(name, kind: kind, parent: parent, attributes: attributes()) else {
            return try await body()
        }
        do {
            let result = try await within(span, body)
            span.end(attributes: outcome?(.success(result)) ?? [])
            return result
        } catch {
            span.end(attributes: outcome?(.failure(error)) ?? [], error: "\(error)")
            throw error
        }
    }

    /// Runs `body` with `span` as the current span (unchanged for nil).
    @discardableResult
    public static func within<T>(_ span: OpenSpan?, _ body: () async throws -> T) async rethrows -> T {
        guard let span else { return try await body() }
        return try await InstrumentationContext.$current.withValue(span.span.context) { try await body() }
    }

    /// The task's place in its trace, to carry into work that runs later in another task.
    public struct Position: Sendable {
        fileprivate let context: InstrumentationContext?
    }

    public static var position: Position { Position(context: isEnabled ? InstrumentationContext.current : nil) }

    @discardableResult
    public static func within<T>(_ position: Position, _ body: () async throws -> T) async rethrows -> T {
        guard let context = position.context else { return try await body() }
        return try await InstrumentationContext.$current.withValue(context) { try await body() }
    }

    /// Records a span that began at `start` (`now()`, taken earlier) and ends now.
    public static func record(
        _ name: String, kind: SpanRole, parent: Parent, start: UInt64,
        attributes: @autoclosure () -> [(key: String, value: SpanAttribute)] = []
    ) {
        OpenSpan(name, kind: kind, parent: parent, start: start, attributes: attributes())?.end()
    }

    /// The `traceparent` a new message carries: the span that causes it, the current one. A message made
    /// outside any span begins a trace: with tracing on, a span named `orphan` marks where, so the
    /// message's `send` span has its parent in the trace.
    public static func causeTraceparent(orphan: @autoclosure () -> String) -> String {
        guard isEnabled else { return TraceContext.newTraceparent() }
        if let current { return current.traceparent }
        guard let span = OpenSpan(orphan(), parent: .root) else { return TraceContext.newTraceparent() }
        span.end()
        return span.context?.traceparent ?? TraceContext.newTraceparent()
    }

    /// The `traceparent` of a message caused by work that belongs to `trace` (a message's `traceparent`):
    /// the current span when it is in that trace, `trace` itself otherwise (work begun for another
    /// message, or tracing off).
    public static func causeTraceparent(within trace: String) -> String {
        guard let current, current.traceID == TraceContext.traceID(of: trace) else { return trace }
        return current.traceparent
    }

    /// Nanoseconds since the Unix epoch.
    public static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    fileprivate static func spanContext(of context: InstrumentationContext, tracer: any Tracer) -> SpanContext? {
        var carrier = TraceparentCarrier()
        tracer.inject(context, into: &carrier, using: TraceparentCarrier.Injector())
        return carrier.traceparent.flatMap(SpanContext.init(traceparent:))
    }

    fileprivate static func context(of parent: Parent, tracer: any Tracer) -> InstrumentationContext {
        switch parent {
        case .current:
            return InstrumentationContext.current ?? .topLevel
        case .root, .remote(nil):
            return .topLevel
        case .remote(let span?):
            var context = InstrumentationContext.topLevel
            tracer.extract(
                TraceparentCarrier(traceparent: span.traceparent), into: &context,
                using: TraceparentCarrier.Extractor())
            return context
        }
    }
}

/// A span begun now (or at a time taken earlier) and ended by `end`: for work that does not run inside
/// one closure (a turn's stages, a batch), or whose attributes are known only at its end. nil when
/// tracing is off, so the paths it measures cost nothing then.
public struct OpenSpan: Sendable {
    fileprivate let span: any Span
    private let tracer: any Tracer

    /// The attributes are only made when tracing is on. `start` is nanoseconds since the Unix epoch
    /// (`Tracing.now()`); now by default.
    public init?(
        _ name: String, kind: SpanRole = .internal, parent: Tracing.Parent = .current, start: UInt64? = nil,
        attributes: @autoclosure () -> [(key: String, value: SpanAttribute)] = []
    ) {
        guard let tracer = Tracing.activeTracer else { return nil }
        let context = Tracing.context(of: parent, tracer: tracer)
        let instant = EpochInstant(nanosecondsSinceEpoch: start ?? Tracing.now())
        span =
            switch kind {
            case .internal: tracer.startSpan(name, context: context, ofKind: .internal, at: instant)
            case .server: tracer.startSpan(name, context: context, ofKind: .server, at: instant)
            case .client: tracer.startSpan(name, context: context, ofKind: .client, at: instant)
            case .producer: tracer.startSpan(name, context: context, ofKind: .producer, at: instant)
            case .consumer: tracer.startSpan(name, context: context, ofKind: .consumer, at: instant)
            }
        self.tracer = tracer
        set(attributes())
    }

    /// Where the span is in its trace: what a message or an event it causes names as its parent. nil
    /// when the tracer gave the span no context to propagate (swift-otel's always-off sampler).
    public var context: SpanContext? { Tracing.spanContext(of: span.context, tracer: tracer) }

    /// Names the span after what it turned out to do.
    public func rename(_ name: String) { span.operationName = name }

    public func end(attributes more: [(key: String, value: SpanAttribute)] = [], error: String? = nil) {
        set(more)
        if let error { span.setStatus(SpanStatus(code: .error, message: error)) }
        span.end(at: EpochInstant(nanosecondsSinceEpoch: Tracing.now()))
    }

    private func set(_ attributes: [(key: String, value: SpanAttribute)]) {
        guard !attributes.isEmpty else { return }
        span.updateAttributes { all in
            for (key, value) in attributes {
                switch value {
                case .string(let text): all[key] = text
                case .int(let number): all[key] = number
                case .bool(let flag): all[key] = flag
                }
            }
        }
    }
}

/// A time as swift-distributed-tracing takes it, from the wall clock Switchboard's spans are timed by.
struct EpochInstant: TracerInstant {
    var nanosecondsSinceEpoch: UInt64
    static func < (lhs: Self, rhs: Self) -> Bool { lhs.nanosecondsSinceEpoch < rhs.nanosecondsSinceEpoch }
}

/// The W3C `traceparent`, the only field Switchboard's messages and events carry between processes.
struct TraceparentCarrier {
    var traceparent: String?

    struct Injector: Instrumentation.Injector {
        func inject(_ value: String, forKey key: String, into carrier: inout TraceparentCarrier) {
            if key == BusHeaders.traceparent { carrier.traceparent = value }
        }
    }

    struct Extractor: Instrumentation.Extractor {
        func extract(key: String, from carrier: TraceparentCarrier) -> String? {
            key == BusHeaders.traceparent ? carrier.traceparent : nil
        }
    }
}
