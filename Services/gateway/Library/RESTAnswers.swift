import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SwitchboardContracts

/// A REST route's refusal: its HTTP status, an error code from `ErrorCode` (or a route's own) and a
/// reason a person can read. Each front door renders it in its dialect.
struct APIError: Error, Sendable {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    /// Sent as `Retry-After` (rate limits).
    var retryAfterSeconds: Int?

    init(_ status: HTTPResponse.Status, _ code: String, _ message: String, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }
}

/// `{"error": {"code": …, "message": …}}`: the error body of Switchboard's own REST routes (history,
/// devices).
struct APIErrorBody: Encodable, Equatable {
    struct Detail: Encodable, Equatable {
        var code: String
        var message: String
    }

    var error: Detail

    init(code: String, message: String) { error = Detail(code: code, message: message) }
}

extension Response {
    /// `value` as a JSON body with sorted keys and unescaped slashes, the form every REST answer takes.
    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: try GatewayJSON.encoder.encode(value))))
    }
}

extension Request {
    /// The body as `T`; any other body is refused with 400 `BAD_FRAME`, naming the `shape` expected.
    func decodeJSON<T: Decodable>(_: T.Type, context: some RequestContext, shape: String) async throws -> T {
        do {
            return try await decode(as: T.self, context: context)
        } catch {
            throw APIError(.badRequest, ErrorCode.badFrame.rawValue, "the body is JSON \(shape)")
        }
    }
}

/// The encoder of every JSON the gateway writes itself: sorted keys, unescaped slashes.
enum GatewayJSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}
