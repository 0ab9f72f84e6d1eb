import Logging
import OTel
import ServiceLifecycle
import SwitchboardTracing

/// swift-otel's tracer and its OTLP/HTTP exporter, for SWITCHBOARD_OTEL_ENDPOINT (docs/configuration.md#traces).
enum SpanExport {
    /// Spans wait in swift-otel's batch processor, up to this many; when the collector is away and the
    /// queue is full, new ones are dropped (swift-otel logs how many), never waited for.
    static let queueLimit = 8192
    static let batchLimit = 512

    /// Makes the process's tracer and returns the service that exports its spans; it must run for
    /// spans to leave, and stops last so that it sends what the others' last work left.
    static func bootstrap(
        endpoint: String, service: String, instance: String, logger: Logger
    ) throws -> any Service {
        var configuration = OTel.Configuration.default
        configuration.serviceName = service
        configuration.resourceAttributes = ["service.instance.id": instance, "service.namespace": "switchboard"]
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning
        configuration.propagators = [.traceContext]
        configuration.metrics.enabled = false
        configuration.logs.enabled = false
        configuration.traces.enabled = true
        configuration.traces.sampler = .parentBasedAlwaysOn
        configuration.traces.batchSpanProcessor.scheduleDelay = .seconds(1)
        configuration.traces.batchSpanProcessor.maxQueueSize = queueLimit
        configuration.traces.batchSpanProcessor.maxExportBatchSize = batchLimit
        configuration.traces.exporter = .otlp
        configuration.traces.otlpExporter.protocol = .httpProtobuf
        configuration.traces.otlpExporter.endpoint =
            endpoint.hasSuffix("/") ? endpoint + "v1/traces" : endpoint + "/v1/traces"
        let backend = try OTel.makeTracingBackend(configuration: configuration)
        SwitchboardTracing.Tracing.bootstrap(backend.factory)
        return backend.service
    }
}
