import SwitchboardContracts
import SwitchboardTracing

/// The spans of the bus, named and attributed by OpenTelemetry's messaging conventions. A message's
/// envelope names the span that caused it; its `send` span is that span's child, and its `traceparent`
/// header names the `send` span, so the span that processes it on the other side is the send's child.
struct ProducerSpan: Sendable {
    private let span: OpenSpan

    /// Begins the `send` span and names it in `message`'s header; nil when tracing is off or the message
    /// carries no trace.
    init?(_ message: inout KafkaOutgoingMessage) {
        guard Tracing.isEnabled,
            let header = message.headers.firstIndex(where: { $0.name == BusHeaders.traceparent }),
            let cause = SpanContext(traceparent: message.headers[header].stringValue),
            let span = OpenSpan(
                "send \(message.topic)", kind: .producer, parent: .remote(cause),
                attributes: KafkaSpans.attributes(topic: message.topic, operation: "send"))
        else { return nil }
        // Without a context of its own (an always-off sampler) the header keeps naming the cause.
        if let own = span.context {
            message.headers[header] = KafkaHeader(name: BusHeaders.traceparent, string: own.traceparent)
        }
        self.span = span
    }

    func end(_ result: Result<DeliveryReport, KafkaError>) {
        switch result {
        case .success(let report):
            span.end(attributes: [
                ("messaging.destination.partition.id", .string(String(report.partition))),
                ("messaging.kafka.offset", .int(report.offset)),
            ])
        case .failure(let failure):
            span.end(error: "\(failure)")
        }
    }
}

enum KafkaSpans {
    static func attributes(topic: String, operation: String) -> [(key: String, value: SpanAttribute)] {
        [
            ("messaging.system", "kafka"), ("messaging.destination.name", .string(topic)),
            ("messaging.operation.type", .string(operation)),
        ]
    }

    /// The message's own position in its trace, from its `traceparent` header.
    static func sender(of message: KafkaConsumerMessage) -> SpanContext? {
        message.headers.first { $0.name == BusHeaders.traceparent }.flatMap { SpanContext(traceparent: $0.stringValue) }
    }

    /// Runs `body` in the `process` span of `message`, a child of the span that sent it.
    static func process<T>(
        _ message: KafkaConsumerMessage, group: String, _ body: () async throws -> T
    ) async rethrows -> T {
        guard Tracing.isEnabled else { return try await body() }
        var attributes = attributes(topic: message.topic, operation: "process")
        attributes.append(("messaging.consumer.group.name", .string(group)))
        attributes.append(("messaging.destination.partition.id", .string(String(message.partition))))
        attributes.append(("messaging.kafka.offset", .int(message.offset)))
        return try await Tracing.withSpan(
            "process \(message.topic)", kind: .consumer, parent: .remote(sender(of: message)), attributes: attributes,
            body)
    }
}

/// The `process` spans of a batch handled at once: one per message, each a child of its own sender (the
/// messages of a batch belong to different traces). They begin before the batch handler runs and are
/// `current` while it does, so the handler's own spans (the notifier's publish) can be their children.
public struct BatchProcessSpans: Sendable {
    @TaskLocal public static var current: BatchProcessSpans?

    /// By position in the batch.
    public let spans: [OpenSpan]

    /// Runs `body` with the batch's spans current (when tracing is on), and ends them with its outcome.
    static func run(_ batch: [KafkaConsumerMessage], group: String, _ body: () async throws -> Void) async throws {
        guard Tracing.isEnabled else { return try await body() }
        let spans = BatchProcessSpans(
            spans: batch.compactMap { message in
                var attributes = KafkaSpans.attributes(topic: message.topic, operation: "process")
                attributes.append(("messaging.consumer.group.name", .string(group)))
                attributes.append(("messaging.batch.message_count", .int(Int64(batch.count))))
                return OpenSpan(
                    "process \(message.topic)", kind: .consumer, parent: .remote(KafkaSpans.sender(of: message)),
                    attributes: attributes)
            })
        do {
            try await $current.withValue(spans, operation: body)
            for span in spans.spans { span.end() }
        } catch {
            // The batch is handled again message by message, each in a `process` span of its own.
            for span in spans.spans { span.end(error: "\(error)") }
            throw error
        }
    }
}
