import AsyncHTTPClient
import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import SwitchboardTracing
import Synchronization

/// Sends finished spans to an OpenTelemetry collector: OTLP over HTTP with the JSON encoding
/// (`POST <endpoint>/v1/traces`), in batches every second. Spans wait in a bounded buffer; when the
/// collector is away and the buffer is full, new spans are dropped and counted, never waited for.
public final class OTLPExporter: SpanExporting, Service {
    public static let bufferLimit = 8192
    public static let batchLimit = 512

    private let url: String
    private let resource: OTLPTraces.Resource
    private let buffer = Mutex<[FinishedSpan]>([])
    private let logger: Logger
    private let dropped = Counter(label: "sb_trace_spans_dropped_total")
    private let exported = Counter(label: "sb_trace_spans_exported_total")

    /// `endpoint` is the collector's OTLP/HTTP base URL (`http://collector:4318`).
    public init(endpoint: String, service: String, instance: String, logger: Logger) {
        url = endpoint.hasSuffix("/") ? endpoint + "v1/traces" : endpoint + "/v1/traces"
        resource = OTLPTraces.Resource(attributes: [
            .init(key: "service.name", value: .string(service)),
            .init(key: "service.instance.id", value: .string(instance)),
            .init(key: "service.namespace", value: .string("switchboard")),
        ])
        self.logger = logger
    }

    public func export(_ span: FinishedSpan) {
        let accepted = buffer.withLock { buffer in
            guard buffer.count < Self.bufferLimit else { return false }
            buffer.append(span)
            return true
        }
        if !accepted { dropped.increment() }
    }

    public func run() async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                await self.flush(client)
            }
        }
        // What the last second's work left, once more before the process ends.
        await flush(client)
        try? await client.shutdown()
    }

    private func flush(_ client: HTTPClient) async {
        while true {
            let batch = buffer.withLock { buffer in
                let batch = Array(buffer.prefix(Self.batchLimit))
                buffer.removeFirst(batch.count)
                return batch
            }
            guard !batch.isEmpty else { return }
            do {
                var request = HTTPClientRequest(url: url)
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(
                    ByteBuffer(bytes: try JSONEncoder().encode(OTLPTraces(resource: resource, spans: batch))))
                let response = try await client.execute(request, timeout: .seconds(5))
                guard (200..<300).contains(response.status.code) else {
                    throw OTLPExportError(status: Int(response.status.code))
                }
                exported.increment(by: batch.count)
            } catch {
                dropped.increment(by: batch.count)
                logger.debug("spans not exported", metadata: ["error": "\(error)", "spans": "\(batch.count)"])
                return
            }
        }
    }
}

struct OTLPExportError: Error, CustomStringConvertible {
    var status: Int
    var description: String { "the collector answered HTTP \(status)" }
}

/// The OTLP/JSON body of `ExportTraceServiceRequest` (opentelemetry-proto, trace/v1): ids as hex, times
/// as decimal strings, enums as numbers.
public struct OTLPTraces: Codable, Sendable {
    public struct Resource: Codable, Sendable {
        public var attributes: [KeyValue]
    }

    public struct KeyValue: Codable, Sendable {
        public var key: String
        public var value: AnyValue
    }

    public struct AnyValue: Codable, Sendable {
        public var stringValue: String?
        public var intValue: String?
        public var boolValue: Bool?

        public static func string(_ value: String) -> AnyValue { AnyValue(stringValue: value) }
    }

    public struct ResourceSpans: Codable, Sendable {
        public var resource: Resource
        public var scopeSpans: [ScopeSpans]
    }

    public struct ScopeSpans: Codable, Sendable {
        public var scope: Scope
        public var spans: [Span]
    }

    public struct Scope: Codable, Sendable {
        public var name: String
    }

    public struct Span: Codable, Sendable {
        public var traceId: String
        public var spanId: String
        public var parentSpanId: String?
        public var name: String
        public var kind: Int
        public var startTimeUnixNano: String
        public var endTimeUnixNano: String
        public var attributes: [KeyValue]
        public var status: Status?
    }

    public struct Status: Codable, Sendable {
        /// 2: error.
        public var code: Int
        public var message: String?
    }

    public var resourceSpans: [ResourceSpans]

    init(resource: Resource, spans: [FinishedSpan]) {
        resourceSpans = [
            ResourceSpans(
                resource: resource,
                scopeSpans: [ScopeSpans(scope: Scope(name: "switchboard"), spans: spans.map(Span.init))])
        ]
    }
}

extension OTLPTraces.Span {
    init(_ span: FinishedSpan) {
        self.init(
            traceId: span.context.traceID, spanId: span.context.spanID, parentSpanId: span.parentSpanID,
            name: span.name, kind: span.kind.rawValue, startTimeUnixNano: String(span.start),
            endTimeUnixNano: String(span.end),
            attributes: span.attributes.map { OTLPTraces.KeyValue(key: $0.key, value: OTLPTraces.AnyValue($0.value)) },
            status: span.error.map { OTLPTraces.Status(code: 2, message: $0) })
    }
}

extension OTLPTraces.AnyValue {
    init(_ attribute: SpanAttribute) {
        switch attribute {
        case .string(let value): self.init(stringValue: value)
        case .int(let value): self.init(intValue: String(value))
        case .bool(let value): self.init(boolValue: value)
        }
    }
}
