import Foundation
import SwitchboardContracts
import Synchronization

/// Where finished spans go (`OTLPExporter` in SwitchboardRuntime). `export` must not block: it is
/// called on the paths it measures.
public protocol SpanExporting: Sendable {
    func export(_ span: FinishedSpan)
}

/// The process's tracer: off until `bootstrap` is given an exporter (SWITCHBOARD_OTEL_ENDPOINT), and
/// then every span made through it is exported. The current span travels with the task (a task local),
/// and across services in each Kafka message's `traceparent` header.
public enum Tracing {
    private static let exporter = Mutex<(any SpanExporting)?>(nil)
    private static let enabled = Atomic<Bool>(false)

    @TaskLocal public static var current: SpanContext?

    public static func bootstrap(_ exporter: any SpanExporting) {
        self.exporter.withLock { $0 = exporter }
        enabled.store(true, ordering: .releasing)
    }

    public static var isEnabled: Bool { enabled.load(ordering: .acquiring) }

    /// Runs `body` in a new span, a child of `parent` (by default the task's current span; a new trace
    /// when there is none), which is the current span inside `body`. `outcome` adds attributes that
    /// depend on how `body` ended; an error thrown by `body` is the span's error status.
    @discardableResult
    public static func withSpan<T>(
        _ name: String, kind: SpanKind = .internal, parent: SpanContext? = Tracing.current,
        attributes: @autoclosure () -> [(key: String, value: SpanAttribute)] = [],
        outcome: ((Result<T, any Error>) -> [(key: String, value: SpanAttribute)])? = nil,
        _ body: () async throws -> T
    ) async rethrows -> T {
        guard let span = OpenSpan(name, kind: kind, parent: parent, attributes: attributes()) else {
            return try await body()
        }
        do {
            let result = try await $current.withValue(span.context) { try await body() }
            span.end(attributes: outcome?(.success(result)) ?? [])
            return result
        } catch {
            span.end(attributes: outcome?(.failure(error)) ?? [], error: "\(error)")
            throw error
        }
    }

    /// Exports a span whose start was taken earlier (`now()`) and which ends now.
    public static func record(
        _ context: SpanContext, parent: String?, _ name: String, kind: SpanKind, start: UInt64,
        attributes: [(key: String, value: SpanAttribute)] = [], error: String? = nil
    ) {
        guard let exporter = exporter.withLock({ $0 }) else { return }
        exporter.export(
            FinishedSpan(
                context: context, parentSpanID: parent, name: name, kind: kind, start: start, end: now(),
                attributes: attributes, error: error))
    }

    /// The `traceparent` of a new message caused by the current span (a new trace when there is none).
    public static func childTraceparent(of parent: SpanContext? = Tracing.current) -> String {
        parent.map { TraceContext.child(of: $0.traceparent) } ?? TraceContext.newTraceparent()
    }

    public static func newContext(childOf parent: SpanContext?) -> SpanContext {
        // Both forms are well made, so the parse cannot fail.
        SpanContext(traceparent: childTraceparent(of: parent))!
    }

    /// Nanoseconds since the Unix epoch.
    public static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}

/// A span begun now and ended by `end`: for work that does not run inside one closure (a turn's stages,
/// a batch), or whose attributes are known only at its end. nil when tracing is off, so the paths it
/// measures cost nothing then.
public struct OpenSpan: Sendable {
    public let context: SpanContext
    public let parentSpanID: String?
    let name: String
    let kind: SpanKind
    let start: UInt64
    let attributes: [(key: String, value: SpanAttribute)]

    /// A child of `parent` (by default the task's current span; a new trace when there is none). The
    /// attributes are only made when tracing is on.
    public init?(
        _ name: String, kind: SpanKind = .internal, parent: SpanContext? = Tracing.current,
        attributes: @autoclosure () -> [(key: String, value: SpanAttribute)] = []
    ) {
        guard Tracing.isEnabled else { return nil }
        self.init(
            name, kind: kind, context: Tracing.newContext(childOf: parent), parentSpanID: parent?.spanID,
            attributes: attributes())
    }

    /// A span whose id was chosen before (one a message or an event already names as its parent).
    public init?(
        _ name: String, kind: SpanKind, context: SpanContext, parentSpanID: String?,
        attributes: @autoclosure () -> [(key: String, value: SpanAttribute)] = []
    ) {
        guard Tracing.isEnabled else { return nil }
        self.context = context
        self.parentSpanID = parentSpanID
        self.name = name
        self.kind = kind
        self.start = Tracing.now()
        self.attributes = attributes()
    }

    public func end(attributes more: [(key: String, value: SpanAttribute)] = [], error: String? = nil) {
        Tracing.record(
            context, parent: parentSpanID, name, kind: kind, start: start, attributes: attributes + more,
            error: error)
    }
}
