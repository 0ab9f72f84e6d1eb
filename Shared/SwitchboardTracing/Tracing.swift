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
    /// when there is none), which is the current span inside `body`.
    public static func withSpan<T>(
        _ name: String, kind: SpanKind = .internal, parent: SpanContext? = Tracing.current,
        attributes: [(key: String, value: SpanAttribute)] = [], _ body: () async throws -> T
    ) async rethrows -> T {
        guard isEnabled else { return try await body() }
        let context = newContext(childOf: parent)
        let start = now()
        do {
            let result = try await $current.withValue(context) { try await body() }
            record(context, parent: parent?.spanID, name, kind: kind, start: start, attributes: attributes)
            return result
        } catch {
            record(
                context, parent: parent?.spanID, name, kind: kind, start: start, attributes: attributes,
                error: "\(error)")
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
