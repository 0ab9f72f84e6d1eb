import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A tiny OpenTelemetry collector: takes `POST /v1/traces` with OTLP/JSON bodies, as an OTLP/HTTP
/// collector does, and keeps the spans. Decoded by the field names of the OTLP specification
/// (opentelemetry-proto trace/v1, JSON encoding: hex ids, decimal-string times), not by Switchboard's
/// own encoder.
public final class OTLPReceiver: Sendable {
    public struct ReceivedSpan: Sendable, Hashable {
        public var service: String
        public var traceID: String
        public var spanID: String
        public var parentSpanID: String?
        public var name: String
        public var kind: Int
        public var start: UInt64
        public var end: UInt64
        public var attributes: [String: String]
        /// OTLP's status code: 2 is an error; nil when the span has no status.
        public var status: Int?
    }

    private struct Request: Decodable {
        struct KeyValue: Decodable {
            struct Value: Decodable {
                var stringValue: String?
                var intValue: String?
                var boolValue: Bool?
            }
            var key: String
            var value: Value
            var text: String { value.stringValue ?? value.intValue ?? value.boolValue.map(String.init) ?? "" }
        }
        struct Span: Decodable {
            var traceId: String
            var spanId: String
            var parentSpanId: String?
            var name: String
            var kind: Int
            var startTimeUnixNano: String
            var endTimeUnixNano: String
            var attributes: [KeyValue]?
            var status: Status?
        }
        struct Status: Decodable { var code: Int? }
        struct ScopeSpans: Decodable { var spans: [Span] }
        struct Resource: Decodable { var attributes: [KeyValue] }
        struct ResourceSpans: Decodable {
            var resource: Resource
            var scopeSpans: [ScopeSpans]
        }
        var resourceSpans: [ResourceSpans]
    }

    private let received = Locked<[ReceivedSpan]>([])

    public init() {}

    public var spans: [ReceivedSpan] { received.withLock { $0 } }

    /// Runs the receiver on a free loopback port for the duration of `body`.
    public func withServer<T: Sendable>(_ body: @escaping @Sendable (Int) async throws -> T) async throws -> T {
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            let bytes = try await request.body.collect(upTo: 16 << 20)
            let export = try JSONDecoder().decode(Request.self, from: Data(bytes.readableBytesView))
            let spans = export.resourceSpans.flatMap { resource in
                let service = resource.resource.attributes.first { $0.key == "service.name" }?.text ?? "?"
                return resource.scopeSpans.flatMap(\.spans).map { span in
                    ReceivedSpan(
                        service: service, traceID: span.traceId, spanID: span.spanId,
                        parentSpanID: span.parentSpanId, name: span.name, kind: span.kind,
                        start: UInt64(span.startTimeUnixNano) ?? 0, end: UInt64(span.endTimeUnixNano) ?? 0,
                        attributes: Dictionary(
                            (span.attributes ?? []).map { ($0.key, $0.text) }, uniquingKeysWith: { $1 }),
                        status: span.status?.code)
                }
            }
            self.received.withLock { $0 += spans }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: "{}")))
        }
        return try await LocalHTTPServer.withServer(router: router, label: "otlp-receiver", body)
    }
}
