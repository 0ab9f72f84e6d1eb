import SwitchboardKafka
import SwitchboardRedis
import SwitchboardTracing

/// A batch's Redis round trip as a span in each trace its events belong to (OpenTelemetry's database
/// conventions): a child of the `process` span of that trace's first event in the batch, and the span
/// the gateways' writes of those events continue (the wire carries its traceparent).
struct PublishSpans {
    /// Per trace of the batch.
    private let parents: [SpanContext?]
    private let contexts: [SpanContext]
    /// Per event, by position in the batch: the index of its trace.
    private let traceOfEvent: [Int]

    /// nil when tracing is off. The parents are the batch's `process` spans, or the current span when
    /// a message is handled on its own.
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
        self.parents = parents
        contexts = parents.map(Tracing.newContext(childOf:))
    }

    func traceparent(ofEvent index: Int) -> String { contexts[traceOfEvent[index]].traceparent }

    /// The spans, named after the commands sent: the command, `BATCH <command>` when the pipeline sends
    /// only that one, `BATCH` otherwise.
    func begin(_ commands: [[RedisArgument]]) -> [OpenSpan] {
        let names = Set(commands.compactMap { $0.first.map { String(decoding: $0.bytes, as: UTF8.self) } })
        let operation =
            commands.count == 1 ? names.first ?? "" : names.count == 1 ? "BATCH \(names.first ?? "")" : "BATCH"
        var attributes: [(key: String, value: SpanAttribute)] = [
            ("db.system", "redis"), ("db.system.name", "redis"), ("db.operation.name", .string(operation)),
        ]
        if commands.count > 1 { attributes.append(("db.operation.batch.size", .int(Int64(commands.count)))) }
        return contexts.indices.compactMap {
            OpenSpan(
                operation, kind: .client, context: contexts[$0], parentSpanID: parents[$0]?.spanID,
                attributes: attributes)
        }
    }
}
