import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime

/// Binding xiaozhi devices to users (docs/voice.md#activation): the device's `POST /xiaozhi/ota/activate`
/// and the signed-in user's `/api/v1/devices…`. Errors are `{"error": {"code", "message"}}`.
struct DeviceRoutes: Sendable {
    let context: ServiceContext
    let authority: TokenAuthority
    let settings: GatewaySettings

    var directory: DeviceDirectory {
        DeviceDirectory(
            redis: context.redis, settings: settings.xiaozhi.activation, secret: context.configuration.deviceKeySecret)
    }

    struct BindBody: Decodable { var code: String }
    struct RenameBody: Decodable { var name: String }
    struct DeviceList: Encodable { var devices: [DeviceDirectory.DeviceView] }
    struct ActivationAnswer: Encodable {
        var status: String
        var message: String
    }

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.post("/xiaozhi/ota/activate") { request, context in
            try await Self.respond { try await activate(request, context) }
        }
        router.get("/api/v1/devices") { request, _ in
            try await Self.respond {
                try Response.json(DeviceList(devices: try await directory.devices(of: try await userID(request))))
            }
        }
        router.post("/api/v1/devices/bind") { request, context in
            try await Self.respond {
                let user = try await userID(request)
                let body = try await request.decodeJSON(BindBody.self, context: context, shape: #"{"code": "123456"}"#)
                let binding = try await directory.bind(
                    code: body.code.trimmingCharacters(in: .whitespaces), user: user, now: Clock.epochMilliseconds())
                return try Response.json(DeviceDirectory.view(binding, online: false), status: .created)
            }
        }
        router.patch("/api/v1/devices/:id") { request, context in
            try await Self.respond {
                let user = try await userID(request)
                let device = try deviceID(context)
                let body = try await request.decodeJSON(RenameBody.self, context: context, shape: #"{"name": "…"}"#)
                let name = body.name.trimmingCharacters(in: .whitespacesAndNewlines)
                guard (1...64).contains(name.count),
                    !name.unicodeScalars.contains(where: { CharacterSet.controlCharacters.contains($0) })
                else { throw APIError(.badRequest, ErrorCode.invalidArgument.rawValue, "name is 1-64 characters") }
                return try Response.json(try await directory.rename(device, to: name, user: user))
            }
        }
        router.delete("/api/v1/devices/:id") { request, context in
            try await Self.respond {
                try await directory.unbind(try deviceID(context), user: try await userID(request))
                return Response(status: .noContent)
            }
        }
    }

    /// 200 once bound (and proven), 202 while waiting for the user; the firmware asks again on 202.
    func activate(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        guard let device = request.headers[.deviceID], DeviceIdentity.isValidDeviceID(device) else {
            throw APIError(
                .badRequest, ErrorCode.invalidArgument.rawValue, "the Device-Id header (the device's MAC) is required")
        }
        try await directory.admit(address: Self.address(of: context))
        let body = try await request.body.collect(upTo: 16 * 1024)
        let proof: ActivationProof
        do {
            proof = try ActivationProof.parse(Data(body.readableBytesView))
        } catch {
            throw APIError(
                .badRequest, ErrorCode.badFrame.rawValue,
                #"the body is JSON {"Payload": {"algorithm", "serial_number", "challenge", "hmac"}} or empty"#)
        }
        switch try await directory.activate(device: device, proof: proof, now: Clock.epochMilliseconds()) {
        case .activated:
            return try Response.json(ActivationAnswer(status: "activated", message: "device activated"))
        case .pending:
            return try Response.json(
                ActivationAnswer(status: "pending", message: "waiting for a user to enter the code"), status: .accepted)
        case .expired:
            throw APIError(.notFound, "ACTIVATION_EXPIRED", "no activation in progress; ask OTA for a new code")
        case .rejected(let reason):
            throw APIError(.forbidden, ErrorCode.permissionDenied.rawValue, reason)
        }
    }

    static func address(of context: GatewayRequestContext) -> String {
        context.channel.remoteAddress?.ipAddress ?? "unknown"
    }

    func userID(_ request: Request) async throws -> String {
        do {
            return try await Gateway.authenticate(request, authority: authority).userID
        } catch let error as HTTPError {
            throw APIError(.unauthorized, "UNAUTHORIZED", error.body ?? "a token is required")
        }
    }

    func deviceID(_ context: GatewayRequestContext) throws -> String {
        // Browsers send a MAC's colons percent-encoded (encodeURIComponent).
        guard let id = context.parameters.get("id")?.removingPercentEncoding, DeviceIdentity.isValidDeviceID(id) else {
            throw APIError(
                .badRequest, ErrorCode.invalidArgument.rawValue,
                "a device id is 1-64 letters, digits, ':', '-', '_' or '.'")
        }
        return id
    }

    /// Renders a `APIError` with its code; Redis being down is 503, never a hang or a 500 without a code.
    static func respond(_ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch let error as APIError {
            var response = try Response.json(
                APIErrorBody(code: error.code, message: error.message), status: error.status)
            if let seconds = error.retryAfterSeconds { response.headers[.retryAfter] = String(seconds) }
            return response
        } catch is RedisError {
            return try Response.json(
                APIErrorBody(code: ErrorCode.unavailable.rawValue, message: "device directory unavailable; try again"),
                status: .serviceUnavailable)
        }
    }
}
