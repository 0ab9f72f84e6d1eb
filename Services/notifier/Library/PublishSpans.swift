import SwitchboardKafka
import SwitchboardRedis
import SwitchboardTracing

/// A batch's Redis round trip as a span in each trace its events belong to (OpenTelemetry's database
/// conventions): a child of the `process` span of that trace's first event in the batch, and the span
/// the gateways' writes of those events continue (the wire carries its traceparent).
struct PublishSpans {
    /// Per trace of the batch.
    private let spans: [OpenSpan]
    /// nil where the span has no context to propagate (an always-off sampler).
    private let traceparents: [String?]
    /// Per event, by position in the batch: the index of its trace.
    private let traceOfEvent: [Int]

    /// Begins the spans; nil when tracing is off. The parents are the batch's `process` spans, or the
    /// current span when a message is handled on its own.
    init?(events count: Int) {
        guard Tracing.isEnabled else { return nil }
        let processes: [SpanContext?]
        if let batch = BatchProcessSpans.current?.spans, batch.count == count {
            processes = batch.map(\.context)
        } else {
            processes = Array(repeating: Tracing.current, count: count)
        }
        var traceIndex: [String: Int] = [:]
        var parents: [SpanContext?] = []
        traceOfEvent = processes.map { process in
            let trace = process?.traceID ?? ""
            if let index = traceIndex[trace] { return index }
            traceIndex[trace] = parents.count
            parents.append(process)
            return parents.count - 1
        }
        // Named once the commands are known (`end`): the events' commands carry these spans' traceparents.
        spans = parents.compactMap { OpenSpan("BATCH", kind: .client, parent: .remote($0)) }
        guard spans.count == parents.count else { return nil }
        traceparents = spans.map(\.context?.traceparent)
    }

    func traceparent(ofEvent index: Int) -> String? { traceparents[traceOfEvent[index]] }

    /// Ends the spans, named after the commands sent: the command, `BATCH <command>` when the pipeline
    /// sends only that one, `BATCH` otherwise.
    func end(_ commands: [[RedisArgument]], error: (any Error)?) {
        let names = Set(commands.compactMap { $0.first.map { String(decoding: $0.bytes, as: UTF8.self) } })
        let operation =
            commands.count == 1 ? names.first ?? "" : names.count == 1 ? "BATCH \(names.first ?? "")" : "BATCH"
        var attributes: [(key: String, value: SpanAttribute)] = [
            ("db.system", "redis"), ("db.system.name", "redis"), ("db.operation.name", .string(operation)),
        ]
        if commands.count > 1 { attributes.append(("db.operation.batch.size", .int(Int64(commands.count)))) }
        for span in spans {
            span.rename(operation)
            span.end(attributes: attributes, error: error.map { "\($0)" })
        }
    }
}
