import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// A tiny OpenTelemetry collector: takes `POST /v1/traces` with OTLP/HTTP's binary protobuf bodies
/// (the encoding every collector takes, and the one Switchboard's exporter, swift-otel's, sends) and
/// keeps the spans. Decoded by the field numbers of opentelemetry-proto (collector/trace/v1, trace/v1,
/// common/v1), not by the exporter's own types.
public final class OTLPReceiver: Sendable {
    public struct ReceivedSpan: Sendable, Hashable {
        public var service: String
        /// Lower-case hex, as a `traceparent` writes them.
        public var traceID: String
        public var spanID: String
        /// nil for a root span.
        public var parentSpanID: String?
        public var name: String
        /// OTLP's numbering: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
        public var kind: Int
        public var start: UInt64
        public var end: UInt64
        public var attributes: [String: String]
        /// OTLP's status code: 2 is an error; nil when the span has no status.
        public var status: Int?
    }

    private let received = Locked<[ReceivedSpan]>([])

    public init() {}

    public var spans: [ReceivedSpan] { received.withLock { $0 } }

    /// Runs the receiver on a free loopback port for the duration of `body`.
    public func withServer<T: Sendable>(_ body: @escaping @Sendable (Int) async throws -> T) async throws -> T {
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            let bytes = try await request.body.collect(upTo: 16 << 20)
            let spans = try OTLPProtobuf.spans(inExport: Array(bytes.readableBytesView))
            self.received.withLock { $0 += spans }
            return Response(
                // An empty ExportTraceServiceResponse: everything accepted.
                status: .ok, headers: [.contentType: "application/x-protobuf"], body: ResponseBody())
        }
        return try await LocalHTTPServer.withServer(router: router, label: "otlp-receiver", body)
    }
}

/// Protobuf's wire format, as far as an OTLP trace export needs it.
enum OTLPProtobuf {
    struct Malformed: Error {}

    /// A message's fields: number, and the value as its wire type gives it.
    struct Field {
        var number: Int
        var varint: UInt64 = 0
        var bytes: ArraySlice<UInt8> = []
    }

    static func fields(_ data: ArraySlice<UInt8>) throws -> [Field] {
        var fields: [Field] = []
        var index = data.startIndex
        func varint() throws -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard index < data.endIndex, shift < 64 else { throw Malformed() }
                let byte = data[index]
                index += 1
                value |= UInt64(byte & 0x7f) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
        }
        func take(_ count: Int) throws -> ArraySlice<UInt8> {
            guard count >= 0, data.endIndex - index >= count else { throw Malformed() }
            defer { index += count }
            return data[index..<index + count]
        }
        func littleEndian(_ bytes: ArraySlice<UInt8>) -> UInt64 {
            bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
        while index < data.endIndex {
            let tag = try varint()
            var field = Field(number: Int(tag >> 3))
            switch tag & 7 {
            case 0: field.varint = try varint()
            case 1: field.varint = littleEndian(try take(8))
            case 2: field.bytes = try take(Int(try varint()))
            case 5: field.varint = littleEndian(try take(4))
            default: throw Malformed()
            }
            fields.append(field)
        }
        return fields
    }

    /// `ExportTraceServiceRequest`: resource_spans 1 { resource 1 { attributes 1 }, scope_spans 2 { spans 2 } }.
    static func spans(inExport data: [UInt8]) throws -> [OTLPReceiver.ReceivedSpan] {
        var spans: [OTLPReceiver.ReceivedSpan] = []
        for resourceSpans in try fields(data[...]) where resourceSpans.number == 1 {
            let parts = try fields(resourceSpans.bytes)
            var resource: [String: String] = [:]
            for part in parts where part.number == 1 {
                resource = try attributes(fields(part.bytes).filter { $0.number == 1 })
            }
            for scopeSpans in parts where scopeSpans.number == 2 {
                for span in try fields(scopeSpans.bytes) where span.number == 2 {
                    spans.append(try self.span(span.bytes, service: resource["service.name"] ?? "?"))
                }
            }
        }
        return spans
    }

    /// `Span`: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, start 7, end 8, attributes 9, status 15 { code 3 }.
    static func span(_ data: ArraySlice<UInt8>, service: String) throws -> OTLPReceiver.ReceivedSpan {
        let parts = try fields(data)
        func bytes(_ number: Int) -> ArraySlice<UInt8> { parts.last { $0.number == number }?.bytes ?? [] }
        func number(_ number: Int) -> UInt64 { parts.last { $0.number == number }?.varint ?? 0 }
        let parent = hex(bytes(4))
        var status: Int?
        if let statusField = parts.last(where: { $0.number == 15 }) {
            status = Int(try fields(statusField.bytes).last { $0.number == 3 }?.varint ?? 0)
        }
        return OTLPReceiver.ReceivedSpan(
            service: service, traceID: hex(bytes(1)), spanID: hex(bytes(2)),
            parentSpanID: parent.isEmpty ? nil : parent, name: String(decoding: bytes(5), as: UTF8.self),
            kind: Int(number(6)), start: number(7), end: number(8),
            attributes: try attributes(parts.filter { $0.number == 9 }), status: status)
    }

    /// `KeyValue`s: key 1, value 2 (`AnyValue`: string 1, bool 2, int 3, double 4), as text.
    static func attributes(_ keyValues: [Field]) throws -> [String: String] {
        var attributes: [String: String] = [:]
        for keyValue in keyValues {
            let parts = try fields(keyValue.bytes)
            let key = String(decoding: parts.last { $0.number == 1 }?.bytes ?? [], as: UTF8.self)
            guard let value = try parts.last(where: { $0.number == 2 }).map({ try fields($0.bytes) })?.last else {
                continue
            }
            attributes[key] =
                switch value.number {
                case 1: String(decoding: value.bytes, as: UTF8.self)
                case 2: value.varint != 0 ? "true" : "false"
                case 3: String(Int64(bitPattern: value.varint))
                case 4: String(Double(bitPattern: value.varint))
                default: ""
                }
        }
        return attributes
    }

    static func hex(_ bytes: ArraySlice<UInt8>) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }
}
