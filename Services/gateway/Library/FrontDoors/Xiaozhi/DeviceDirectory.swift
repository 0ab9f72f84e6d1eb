import Crypto
import Foundation
import HTTPTypes
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardVoice

/// An error of the device routes: an HTTP status, a code and a reason (docs/voice.md#activation).
/// Bindings, activation codes and online state of xiaozhi devices, in Redis (shared by every gateway).
/// Its keys are `Keyspace.Device`'s and the user's `devices`.
struct DeviceDirectory: Sendable {
    let redis: RedisClient
    let settings: DeviceActivationSettings
    let grantKey: SymmetricKey

    init(redis: RedisClient, settings: DeviceActivationSettings, secret: String) {
        self.redis = redis
        self.settings = settings
        self.grantKey = DeviceGrant.key(secret: secret)
    }

    static func bindingKey(_ device: String) -> RedisArgument { RedisArgument(Keyspace.Device.binding(device)) }
    static func generationKey(_ device: String) -> RedisArgument { RedisArgument(Keyspace.Device.generation(device)) }
    static func activationKey(_ device: String) -> RedisArgument { RedisArgument(Keyspace.Device.activation(device)) }
    static func liveKey(_ device: String) -> RedisArgument { RedisArgument(Keyspace.Device.live(device)) }
    static func codeKey(_ code: String) -> RedisArgument { RedisArgument(Keyspace.Device.activationCode(code)) }
    static func userDevicesKey(_ user: String) -> RedisArgument { RedisArgument(Keyspace.User.devices(user)) }

    // MARK: rate limits

    /// OTA and activate per client address: a token bucket in Redis, so all gateways count together.
    func admit(address: String) async throws {
        try await take(
            key: Keyspace.Device.otaRate(address: address), rate: settings.otaRequestsPerSecond,
            burst: settings.otaBurst,
            message: "too many device requests from this address")
    }

    private func take(key: String, rate: Double, burst: Int, message: String) async throws {
        let reply = try await redis.run(
            RateLimiter.script, keys: [RedisArgument(key)],
            arguments: [RedisArgument(String(rate)), RedisArgument(burst)])
        guard reply.integer == 1 else {
            let wait = max(1, Int((1 / rate).rounded(.up)))
            throw APIError(.tooManyRequests, "RATE_LIMITED", message, retryAfterSeconds: wait)
        }
    }

    // MARK: OTA and activation

    func binding(of device: String) async throws -> DeviceBinding? {
        try Self.decode(DeviceBinding.self, try await redis.send("GET", Self.bindingKey(device)))
    }

    func pending(of device: String) async throws -> PendingActivation? {
        try Self.decode(PendingActivation.self, try await redis.send("GET", Self.activationKey(device)))
    }

    /// The code in progress for this device, or a new one (a code is claimed with SET NX, so two
    /// devices never share one).
    func pendingActivation(device: String, client: String, now: Int64) async throws -> PendingActivation {
        if let pending = try await self.pending(of: device), pending.expiresAt > now + 10_000,
            pending.clientId == client
        {
            return pending
        }
        var generator = SystemRandomNumberGenerator()
        let lifetime = settings.codeLifetimeSeconds
        for _ in 0..<10 {
            let code = ActivationCode.generate(using: &generator)
            let claimed = try await redis.send(
                "SET", Self.codeKey(code), RedisArgument(device), "NX", "EX", RedisArgument(lifetime))
            guard !claimed.isNull else { continue }
            let pending = PendingActivation(
                code: code, challenge: UUID().uuidString.lowercased(), clientId: client,
                expiresAt: now + Int64(lifetime) * 1000)
            _ = try await redis.send(
                "SET", Self.activationKey(device), RedisArgument(try Self.encode(pending)), "EX",
                RedisArgument(lifetime))
            return pending
        }
        throw APIError(.serviceUnavailable, ErrorCode.unavailable.rawValue, "no free activation code; try again")
    }

    /// The token OTA hands a bound device, or nil while it must still activate.
    func grant(for binding: DeviceBinding, client: String, now: Int64) throws -> String? {
        guard binding.clientId.isEmpty || binding.clientId == client else {
            throw APIError(
                .forbidden, ErrorCode.permissionDenied.rawValue,
                "this device was bound with another Client-Id; unbind it in the console and bind it again")
        }
        if settings.hmacKey != nil, !binding.activated { return nil }
        let seconds = now / 1000
        return DeviceGrant(
            user: binding.userId, device: binding.deviceId, client: client, generation: binding.generation,
            issuedAt: seconds,
            expiresAt: seconds + DeviceGrant.lifetimeSeconds
        ).mint(key: grantKey)
    }

    /// `POST <ota-url>/activate`.
    func activate(device: String, proof: ActivationProof, now: Int64) async throws -> ActivationOutcome {
        let binding = try await self.binding(of: device)
        let outcome = ActivationOutcome.decide(
            binding: binding, pending: try await self.pending(of: device), proof: proof, hmacKey: settings.hmacKey,
            now: now)
        if outcome == .activated, var binding, !binding.activated {
            binding.activated = true
            _ = try await redis.send("SET", Self.bindingKey(device), RedisArgument(try Self.encode(binding)), "XX")
        }
        return outcome
    }

    /// A grant is good while its device is still bound to its user in the same generation.
    func verify(_ token: String, device: String, client: String, now: Int64) async throws -> DeviceGrant? {
        guard let grant = DeviceGrant.verify(token, key: grantKey, now: now / 1000), grant.device == device,
            grant.client == client,
            let binding = try await self.binding(of: device), binding.userId == grant.user,
            binding.generation == grant.generation
        else { return nil }
        return grant
    }

    // MARK: the user's side

    func bind(code: String, user: String, now: Int64) async throws -> DeviceBinding {
        guard ActivationCode.isWellFormed(code) else {
            throw APIError(.badRequest, ErrorCode.invalidArgument.rawValue, "code is the 6 digits the device shows")
        }
        // Refilled at one attempt per 10 s: a million codes cannot be tried.
        try await take(
            key: Keyspace.User.bindRate(user), rate: 0.1, burst: settings.bindBurst,
            message: "too many binding attempts")
        guard let device = try await redis.send("GET", Self.codeKey(code)).string,
            let pending = try await self.pending(of: device), pending.code == code, pending.expiresAt > now
        else {
            throw APIError(
                .notFound, "CODE_NOT_FOUND", "no device is waiting with this code (it is valid 5 minutes)")
        }
        let generation = try await redis.send("GET", Self.generationKey(device)).integer ?? 0
        let binding = DeviceBinding(
            deviceId: device, userId: user, clientId: pending.clientId, name: device, generation: generation,
            boundAt: now,
            activated: false)
        // NX: of two users racing for one code, one wins.
        let stored = try await redis.send("SET", Self.bindingKey(device), RedisArgument(try Self.encode(binding)), "NX")
        guard !stored.isNull else { throw APIError(.conflict, "ALREADY_BOUND", "this device is already bound") }
        _ = try await redis.pipeline([
            ["SADD", Self.userDevicesKey(user), RedisArgument(device)], ["DEL", Self.codeKey(code)],
        ])
        return binding
    }

    struct DeviceView: Codable, Sendable, Equatable {
        var id: String
        var name: String
        var online: Bool
        var boundAt: Int64
        var activated: Bool
        var conversationId: String
        /// The stages of the device's last answered turn (absent before its first, and a day after its last).
        var lastTurn: VoiceTurnTiming?
    }

    static func view(_ binding: DeviceBinding, online: Bool, lastTurn: VoiceTurnTiming? = nil) -> DeviceView {
        DeviceView(
            id: binding.deviceId, name: binding.name, online: online, boundAt: binding.boundAt,
            activated: binding.activated,
            conversationId: DeviceIdentity.conversation(ofDevice: binding.deviceId, user: binding.userId),
            lastTurn: lastTurn)
    }

    func devices(of user: String) async throws -> [DeviceView] {
        let ids = (try await redis.send("SMEMBERS", Self.userDevicesKey(user)).array ?? []).compactMap(\.string)
            .sorted()
        guard !ids.isEmpty else { return [] }
        let replies = try await redis.pipeline(
            ids.flatMap { [["GET", Self.bindingKey($0)], ["EXISTS", Self.liveKey($0)]] })
        let lastTurns = try await DeviceTurnTimings(redis: redis).last(devices: ids)
        var views: [DeviceView] = []
        for (index, id) in ids.enumerated() {
            guard let binding = try Self.decode(DeviceBinding.self, replies[index * 2]), binding.userId == user else {
                // Unbound meanwhile: forget it.
                _ = try? await redis.send("SREM", Self.userDevicesKey(user), RedisArgument(id))
                continue
            }
            // A turn from before this binding was another owner's.
            let lastTurn = lastTurns[id].flatMap { $0.at >= binding.boundAt ? $0 : nil }
            views.append(Self.view(binding, online: replies[index * 2 + 1].integer == 1, lastTurn: lastTurn))
        }
        return views
    }

    /// The user's binding of a device; someone else's device is "not found", never "forbidden".
    func owned(_ device: String, by user: String) async throws -> DeviceBinding {
        guard let binding = try await self.binding(of: device), binding.userId == user else {
            throw APIError(.notFound, "NOT_FOUND", "no device \(device) is bound to you")
        }
        return binding
    }

    func rename(_ device: String, to name: String, user: String) async throws -> DeviceView {
        var binding = try await owned(device, by: user)
        binding.name = name
        let stored = try await redis.send("SET", Self.bindingKey(device), RedisArgument(try Self.encode(binding)), "XX")
        guard !stored.isNull else { throw APIError(.notFound, "NOT_FOUND", "no device \(device) is bound to you") }
        return Self.view(binding, online: try await redis.send("EXISTS", Self.liveKey(device)).integer == 1)
    }

    /// Revokes every token of the device (the generation moves on) and closes its live connection,
    /// on whichever gateway holds it, through that gateway's downlink channel.
    func unbind(_ device: String, user: String) async throws {
        _ = try await owned(device, by: user)
        _ = try await redis.pipeline([
            ["INCR", Self.generationKey(device)], ["DEL", Self.bindingKey(device)],
            ["DEL", Self.activationKey(device)],
            ["SREM", Self.userDevicesKey(user), RedisArgument(device)],
        ])
        try await disconnect(device)
    }

    func disconnect(_ device: String) async throws {
        guard let live = try await redis.send("GET", Self.liveKey(device)).string else { return }
        let parts = live.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return }
        let item = VoiceDownlink.Item(
            sessionId: String(parts[1]), kind: .close, turn: 0,
            payload: Array("\(CloseCode.unauthorized.rawValue) device unbound".utf8))
        // Heard, or its gateway is gone (and the connection with it): a close lost while the gateway
        // subscribes again after a Redis restart would leave an unbound device talking.
        _ = try await redis.publishUntilHeard(
            [VoiceDownlink.encode(item)], to: Keyspace.PubSub.voiceDownlink(gateway: String(parts[0])),
            deadline: .now + RedisSubscriber.resubscribeWait)
    }

    // MARK: online state (written by the device connection)

    /// Whether a bound device's connection (its conversation is its owner's) is still its owner's.
    /// Asked after the connection is marked online: an unbind racing the hello either finds the
    /// connection to close or is seen here. Redis failing: no (closed by default).
    func stillBound(_ identity: DeviceIdentity) async -> Bool {
        guard identity.conversationID == DeviceIdentity.conversation(ofDevice: identity.deviceID, user: identity.userID)
        else {
            return true  // not a bound device's connection (a provisioned JWT, open enrollment)
        }
        guard let binding = try? await self.binding(of: identity.deviceID) else { return false }
        return binding.userId == identity.userID
    }

    func markOnline(device: String, gateway: String, session: String, ttlSeconds: Int) async throws {
        _ = try await redis.send(
            "SET", Self.liveKey(device), RedisArgument("\(gateway) \(session)"), "EX", RedisArgument(ttlSeconds))
    }

    static let deleteIfSession = RedisScript(
        """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """)

    /// Only this connection's entry: a newer connection of the same device keeps its own.
    func markOffline(device: String, gateway: String, session: String) async throws {
        _ = try await redis.run(
            Self.deleteIfSession, keys: [Self.liveKey(device)], arguments: [RedisArgument("\(gateway) \(session)")])
    }

    // MARK: JSON in Redis

    static func encode(_ value: some Encodable) throws -> String {
        String(decoding: try GatewayJSON.encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_: T.Type, _ reply: RESPValue) throws -> T? {
        guard let bytes = reply.bytes else { return nil }
        return try JSONDecoder().decode(T.self, from: Data(bytes))
    }
}
