import DequeModule
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import Metrics
import NIOCore
import NIOWebSocket
import Synchronization
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardVoice

/// The xiaozhi device side (docs/voice.md): `POST /xiaozhi/ota/` and the device WebSocket `/xiaozhi/v1/`.
public struct XiaozhiSettings: Sendable {
    /// The device's hello must come within this (the device itself waits 10 s for ours).
    public var helloTimeout: Duration = .seconds(10)
    /// The WebSocket URL handed out by OTA; empty: derived from the request's Host.
    public var webSocketURL = ""
    /// OTA answers a bound device with a token; false: devices are provisioned with tokens (JWT) some
    /// other way and OTA hands out neither a token nor an activation code.
    public var otaIssuesTokens = true
    /// Binding devices to users before they get a token (DeviceActivation.swift).
    public var activation = DeviceActivationSettings()
    /// Routing-table entries expire this long after the gateway last refreshed them.
    public var routeTTLSeconds = 120
    /// Downlink pacing: frames sent at once before one per frame duration.
    public var burstFrames = 5

    public init() {}

    static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Self {
        var settings = Self()
        let hello = try setting(
            Double?.none, environment: "XIAOZHI_HELLO_TIMEOUT_SECONDS", default: 10.0, environment: environment)
        settings.webSocketURL = try setting(
            String?.none, environment: "XIAOZHI_WEBSOCKET_URL", default: "", environment: environment)
        settings.otaIssuesTokens = try setting(
            Bool?.none, environment: "XIAOZHI_OTA_ISSUES_TOKENS", default: settings.otaIssuesTokens,
            environment: environment)
        settings.burstFrames = try setting(
            Int?.none, environment: "XIAOZHI_BURST_FRAMES", default: settings.burstFrames, environment: environment)
        settings.activation = try DeviceActivationSettings.fromEnvironment(environment)
        guard hello > 0, settings.burstFrames > 0 else {
            throw ConfigurationError("the hello timeout and burst must be positive")
        }
        settings.helloTimeout = .milliseconds(Int64(hello * 1000))
        return settings
    }
}

/// Who a device connection is, from its headers or query parameters.
struct DeviceIdentity: Sendable {
    var deviceID: String
    var clientID: String
    var protocolVersion: Int
    var userID: String
    var conversationID: String
    /// When the token it connected with expires (the socket is closed then).
    var expiresAt: Date? = nil

    static func isValidDeviceID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64
            && id.unicodeScalars.allSatisfy {
                CharacterSet.alphanumerics.contains($0) || ":-_.".unicodeScalars.contains($0)
            }
    }

    /// One conversation per device, so the dialogue continues across connections.
    static func conversation(ofDevice id: String) -> String {
        "voice-" + id.replacingOccurrences(of: ":", with: "-")
    }
}

struct XiaozhiDevices: WebSocketDoor {
    let context: ServiceContext
    let authority: TokenAuthority
    let hub: DeliveryHub
    let access: ConversationAccess
    let admission: Admission
    let settings: GatewaySettings
    let connections: DeviceConnections

    var xiaozhi: XiaozhiSettings { settings.xiaozhi }
    var directory: DeviceDirectory {
        DeviceDirectory(
            redis: context.redis, settings: xiaozhi.activation, secret: context.configuration.deviceKeySecret)
    }

    func addRoutes(to router: Router<GatewayRequestContext>) {
        // The router ignores a trailing slash: these also serve "/xiaozhi/ota" and "/xiaozhi/v1".
        router.post("/xiaozhi/ota/") { request, context in
            try await DeviceRoutes.respond { try await ota(request, address: DeviceRoutes.address(of: context)) }
        }
    }

    // MARK: The socket (the router ignores a trailing slash; so does the door's pattern)

    var pathPattern: String { "/xiaozhi/v1/" }

    func admit(_ request: UpgradeRequest) async throws -> any WebSocketDoorSession {
        let identity = try await identify(request.http)
        try admission.checkAcceptingConnections()
        return StreamingDoorSession(expiresAt: identity.expiresAt) { messages, socket in
            await serve(identity, inbound: messages, outbound: socket)
        }
    }

    // MARK: OTA

    /// A bound device gets its token; an unbound one an activation code (docs/voice.md#activation).
    func ota(_ request: Request, address: String) async throws -> Response {
        guard let deviceID = request.headers[.deviceID], DeviceIdentity.isValidDeviceID(deviceID) else {
            throw APIError(
                .badRequest, ErrorCode.invalidArgument.rawValue, "the Device-Id header (the device's MAC) is required")
        }
        try await directory.admit(address: address)
        let clientID = request.headers[.clientID] ?? ""
        let now = Clock.epochMilliseconds()
        var answer = OTAAnswer(server_time: .init(timestamp: now), websocket: .init(url: webSocketURL(for: request)))
        if xiaozhi.activation.openEnrollment {
            // Development only: any device, as its own user.
            answer.websocket.token = Xiaozhi.DeviceToken(
                key: DeviceGrant.openEnrollmentKey(secret: context.configuration.deviceKeySecret)
            )
            .mint(clientId: clientID, deviceId: deviceID, at: now / 1000)
        } else if xiaozhi.otaIssuesTokens {
            if let binding = try await directory.binding(of: deviceID),
                let token = try directory.grant(for: binding, client: clientID, now: now)
            {
                answer.websocket.token = token
            } else {
                let pending = try await directory.pendingActivation(device: deviceID, client: clientID, now: now)
                answer.activation = .init(
                    code: pending.code, message: ActivationCode.message(code: pending.code),
                    challenge: pending.challenge,
                    timeout_ms: pending.expiresAt - now)
            }
        }
        return try Response.json(answer)
    }

    func webSocketURL(for request: Request) -> String {
        if !xiaozhi.webSocketURL.isEmpty { return xiaozhi.webSocketURL }
        let host = request.head.authority ?? "127.0.0.1:\(context.configuration.httpPort)"
        // Behind TLS, the gateway's own or a proxy's that says so: the device must use it too.
        let secure =
            request.head.scheme == "https"
            || request.headers[HTTPField.Name("X-Forwarded-Proto")!]?.lowercased() == "https"
        return "\(secure ? "wss" : "ws")://\(host)/xiaozhi/v1/"
    }

    // MARK: connection

    /// Headers, else the query parameters the reference server also accepts.
    func identify(_ request: Request) async throws -> DeviceIdentity {
        func value(_ header: HTTPField.Name, _ query: String) -> String? {
            if let header = request.headers[header], !header.isEmpty { return header }
            return request.uri.queryParameters[query[...]].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
        }
        guard let deviceID = value(.deviceID, "device-id"), DeviceIdentity.isValidDeviceID(deviceID) else {
            throw HTTPError(
                .badRequest,
                message:
                    "Device-Id (header or device-id parameter) is required: 1-64 letters, digits, ':', '-', '_' or '.'")
        }
        let clientID = value(.clientID, "client-id") ?? ""
        let versionText = value(.protocolVersion, "protocol-version") ?? "1"
        guard let version = Int(versionText), (1...3).contains(version) else {
            throw HTTPError(.badRequest, message: "Protocol-Version must be 1, 2 or 3")
        }
        var token = value(.authorization, "authorization") ?? request.uri.queryParameters["token"].map(String.init)
        if let bearer = token, bearer.hasPrefix("Bearer ") { token = String(bearer.dropFirst("Bearer ".count)) }
        guard let token, !token.isEmpty else {
            throw HTTPError(
                .unauthorized, message: "a token is required (Authorization: Bearer, HMAC device token or JWT)")
        }
        let userID: String
        var expiresAt: Date?
        var conversationID = DeviceIdentity.conversation(ofDevice: deviceID)
        if DeviceGrant.looksLikeGrant(token) {
            // A bound device: its owner's, while the binding (and its generation) lasts.
            guard
                let grant = try await directory.verify(
                    token, device: deviceID, client: clientID, now: Clock.epochMilliseconds())
            else {
                throw HTTPError(
                    .unauthorized, message: "the device token is invalid, expired or revoked (bind the device again)")
            }
            userID = grant.user
            expiresAt = Date(timeIntervalSince1970: TimeInterval(grant.expiresAt))
            conversationID = DeviceIdentity.conversation(ofDevice: deviceID, user: grant.user)
        } else if Xiaozhi.DeviceToken.looksLikeDeviceToken(token) {
            // The reference server's token: only while open enrollment (development) is on.
            guard xiaozhi.activation.openEnrollment,
                Xiaozhi.DeviceToken(key: DeviceGrant.openEnrollmentKey(secret: context.configuration.deviceKeySecret))
                    .verify(token, clientId: clientID, deviceId: deviceID, now: Clock.epochMilliseconds() / 1000)
            else { throw HTTPError(.unauthorized, message: "the device token is invalid or expired") }
            userID = "device:\(deviceID)"
        } else {
            do {
                let claims = try await authority.verify(token)
                userID = claims.userID
                expiresAt = claims.expiresAt
            } catch {
                throw HTTPError(.unauthorized, message: error.reason)
            }
        }
        guard try await access.authorize(userID: userID, conversationID: conversationID) else {
            throw HTTPError(.forbidden, message: "device \(deviceID) belongs to another user")
        }
        return DeviceIdentity(
            deviceID: deviceID, clientID: clientID, protocolVersion: version, userID: userID,
            conversationID: conversationID,
            expiresAt: expiresAt)
    }

    func serve(_ identity: DeviceIdentity, inbound: AsyncStream<WebSocketMessage>, outbound: WebSocketOutbound) async {
        // Version checked in identify.
        guard let framing = try? Xiaozhi.BinaryProtocol(version: identity.protocolVersion) else { return }
        let connection = DeviceConnection(
            sessionID: UUID().uuidString.lowercased(), identity: identity, framing: framing,
            burstFrames: xiaozhi.burstFrames)
        var logger = context.logger
        logger[metadataKey: "voice.session"] = "\(connection.sessionID)"
        logger[metadataKey: "voice.device"] = "\(identity.deviceID)"
        let connectionLogger = logger
        do {
            try await connections.start(hub: hub, gateway: context.configuration.instanceID)
        } catch {
            outbound.close(.serverError, reason: "downlink unavailable")
            return
        }
        // A device is one of its user's connections like any other, under the same limit.
        let session = ClientSession(userID: identity.userID, socket: outbound)
        do {
            try await admission.admit(session)
        } catch {
            return outbound.close(error.closeCode, reason: error.message)
        }
        let uplink = Uplink(context: context, connection: connection)
        connections.add(connection)
        defer { connections.remove(connection) }
        let redis = context.redis
        await withTaskGroup(of: Void.self) { writer in
            writer.addTask { await connection.writeFrames(to: outbound, logger: connectionLogger) }
            // The device's MCP outcomes: its tools for the voice turns, call results for the agents.
            // Ends after `finishMCP`, so the calls still waiting at the close get their error answer.
            writer.addTask {
                for await effect in connection.mcpEffects {
                    do {
                        try await Self.apply(effect, session: connection.sessionID, redis: redis)
                    } catch {
                        connectionLogger.warning("device tool outcome not delivered", metadata: ["error": "\(error)"])
                    }
                }
            }
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    try? await Task.sleep(for: xiaozhi.helloTimeout)
                    if !Task.isCancelled, !connection.hasSaidHello {
                        connection.enqueue(
                            .close(code: CloseCode.badRequest.rawValue, reason: "no hello within the handshake timeout")
                        )
                    }
                }
                for await message in inbound {
                    if await !handle(message, connection: connection, uplink: uplink, group: &group) { break }
                }
                group.cancelAll()
            }
            connection.finishMCP()
            // The writer sends what is left that is not audio (a close frame with its reason) and ends.
            connection.finish()
        }
        if connection.hasSaidHello {
            try? await VoiceRouteStore(redis: context.redis).close(session: connection.sessionID)
            try? await directory.markOffline(
                device: connection.identity.deviceID, gateway: context.configuration.instanceID,
                session: connection.sessionID)
            try? await uplink.publish(.close)
        }
        await admission.release(session)
    }

    /// False when the connection is to be closed.
    private func handle(
        _ message: WebSocketMessage, connection: DeviceConnection, uplink: Uplink, group: inout TaskGroup<Void>
    ) async -> Bool {
        switch message {
        case .text(let text):
            return await handleJSON(text, connection: connection, uplink: uplink, group: &group)
        case .binary(let buffer):
            guard connection.hasSaidHello else {
                return refuse(connection, "send hello before audio")
            }
            let payload: Xiaozhi.BinaryPayload
            do {
                payload = try connection.framing.decode(Array(buffer.readableBytesView))
            } catch {
                return refuse(connection, error.reason)
            }
            switch payload {
            case .json(let text):
                return await handleJSON(text, connection: connection, uplink: uplink, group: &group)
            case .audio(let packet, _):
                guard connection.allowUplinkPacket() else {
                    GatewayMetrics.voiceDeviceErrors.increment()
                    connection.enqueue(
                        .close(
                            code: CloseCode.tooManyRequests.rawValue,
                            reason: "more than \(Int(connection.uplinkPacketsPerSecond)) audio packets per second"))
                    return false
                }
                GatewayMetrics.voiceUplinkFrames.increment()
                do {
                    try await uplink.publish(.audio, audio: Data(packet))
                } catch {
                    return fail(connection, error)
                }
                return true
            }
        }
    }

    private func handleJSON(
        _ text: String, connection: DeviceConnection, uplink: Uplink, group: inout TaskGroup<Void>
    ) async -> Bool {
        let message: Xiaozhi.Message
        do {
            message = try Xiaozhi.Message.parse(text)
        } catch {
            return refuse(connection, error.reason)
        }
        if message.type == "hello" {
            return await hello(message, connection: connection, uplink: uplink, group: &group)
        }
        guard connection.hasSaidHello else { return refuse(connection, "send hello before \(message.type)") }
        switch message.type {
        case "ping":
            connection.enqueue(
                .text(
                    Xiaozhi.Message.pong(timestamp: Clock.epochMilliseconds(), sessionId: connection.sessionID).json(),
                    turn: nil))
            return true
        case "abort":
            // Barge-in at the edge: what is queued for the device goes now, whatever voice-worker still sends.
            connection.abort()
        case "mcp":
            // The device's answers to the gateway's MCP client (initialize, tools/list, tools/call).
            guard let mcp = message.mcpMessage else {
                connection.enqueue(
                    .text(
                        Xiaozhi.Message.alert(
                            status: "error", message: "an mcp message carries a JSON-RPC 2.0 payload",
                            sessionId: connection.sessionID
                        )
                        .json(), turn: nil))
                return true
            }
            // Applied before the next message is read: the tools are in the route before any turn that
            // follows the device's last tools/list page can look for them.
            for effect in connection.mcp({ $0.receive(mcp) }) {
                do {
                    try await Self.apply(effect, session: connection.sessionID, redis: context.redis)
                } catch {
                    return fail(connection, error)
                }
            }
            return true
        case "listen", "iot":
            break
        default:
            connection.enqueue(
                .text(
                    Xiaozhi.Message.alert(
                        status: "error", message: "unknown message type \(message.type)",
                        sessionId: connection.sessionID
                    ).json(),
                    turn: nil))
            return true
        }
        do {
            try await uplink.publish(.control, message: text)
        } catch {
            return fail(connection, error)
        }
        return true
    }

    private func hello(
        _ message: Xiaozhi.Message, connection: DeviceConnection, uplink: Uplink, group: inout TaskGroup<Void>
    ) async -> Bool {
        // Any rate and frame length Opus codes is taken (the voice-worker resamples); the reference
        // device's 16 kHz, 60 ms when the hello has no audio_params.
        let uplinkAudio = message.audioParams ?? .uplink
        if let refusal = UplinkAudio.refusal(uplinkAudio) { return refuse(connection, refusal) }
        if connection.hasSaidHello {
            // A second hello (the firmware re-sends it on reconnect logic): answer again, nothing else.
            connection.enqueue(.text(Xiaozhi.Message.serverHello(sessionId: connection.sessionID).json(), turn: nil))
            return true
        }
        let identity = connection.identity
        let routes = VoiceRouteStore(redis: context.redis)
        let route = VoiceRoute(
            gateway: context.configuration.instanceID, userId: identity.userID, conversationId: identity.conversationID,
            deviceId: identity.deviceID,
            uplink: AudioFormat(
                sampleRate: uplinkAudio.sampleRate, frameDurationMilliseconds: uplinkAudio.frameDuration))
        do {
            try await routes.open(route, session: connection.sessionID, ttlSeconds: xiaozhi.routeTTLSeconds)
        } catch {
            return fail(connection, error)
        }
        connection.markHello(uplinkFrameDuration: uplinkAudio.frameDuration)
        let directory = self.directory
        let gateway = context.configuration.instanceID
        try? await directory.markOnline(
            device: identity.deviceID, gateway: gateway, session: connection.sessionID,
            ttlSeconds: xiaozhi.routeTTLSeconds)
        guard await directory.stillBound(identity) else {
            connection.enqueue(.close(code: CloseCode.unauthorized.rawValue, reason: "device unbound"))
            return false
        }
        connection.enqueue(.text(Xiaozhi.Message.serverHello(sessionId: connection.sessionID).json(), turn: nil))
        // A device with MCP gets `initialize` right after our hello, then `tools/list`.
        if message.features?["mcp"] == true { _ = connection.mcp { $0.start() } }
        let ttl = xiaozhi.routeTTLSeconds
        group.addTask {
            // Keeps the route alive while the device is connected.
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(max(1, ttl / 3)))
                try? await routes.refresh(session: connection.sessionID, ttlSeconds: ttl)
                try? await directory.markOnline(
                    device: identity.deviceID, gateway: gateway, session: connection.sessionID, ttlSeconds: ttl)
            }
        }
        do {
            try await uplink.publish(.open)
        } catch {
            return fail(connection, error)
        }
        return true
    }

    static func apply(_ effect: DeviceConnection.MCPEffect, session: String, redis: RedisClient) async throws {
        switch effect {
        case .store(let tools):
            try await VoiceRouteStore(redis: redis).storeTools(tools, session: session)
        case .reply(let result, let channel):
            _ = try await redis.publish([Array(try GatewayJSON.encoder.encode(result))], to: channel)
        }
    }

    private func refuse(_ connection: DeviceConnection, _ reason: String) -> Bool {
        GatewayMetrics.voiceDeviceErrors.increment()
        connection.enqueue(.close(code: CloseCode.badRequest.rawValue, reason: String(reason.prefix(120))))
        return false
    }

    private func fail(_ connection: DeviceConnection, _ error: any Error) -> Bool {
        context.logger.warning(
            "device session failed", metadata: ["error": "\(error)", "voice.session": "\(connection.sessionID)"])
        connection.enqueue(.close(code: CloseCode.serverError.rawValue, reason: "server error; reconnect"))
        return false
    }
}

/// Puts a device's events on `Topics.voiceUplink`, keyed by its session, numbered in order.
final class Uplink: Sendable {
    let context: ServiceContext
    let connection: DeviceConnection
    private let sequence = Atomic<Int64>(0)

    init(context: ServiceContext, connection: DeviceConnection) {
        self.context = context
        self.connection = connection
    }

    func publish(_ kind: VoiceUplinkEvent.Kind, audio: Data? = nil, message: String? = nil) async throws {
        let identity = connection.identity
        let number = sequence.add(1, ordering: .relaxed).oldValue
        let opening = kind == .open
        let event = VoiceUplinkEvent(
            sessionId: connection.sessionID, kind: kind, sequence: number, deviceId: opening ? identity.deviceID : nil,
            userId: opening ? identity.userID : nil, conversationId: opening ? identity.conversationID : nil,
            gateway: opening ? context.configuration.instanceID : nil, audio: audio, message: message)
        try await context.publish(context.envelope(event, routingKey: connection.sessionID), to: Topics.voiceUplink)
    }
}

extension HTTPField.Name {
    static let deviceID = Self("Device-Id")!
    static let clientID = Self("Client-Id")!
    static let protocolVersion = Self("Protocol-Version")!
}
