import Foundation
import SwitchboardContracts
import SwitchboardRedis

/// A device session's entry in the routing table: the gateway holding its socket, whose device it is,
/// and what the device announced in its hello.
public struct VoiceRoute: Sendable, Equatable {
    public var gateway: String
    public var userId: String
    public var conversationId: String
    public var deviceId: String
    /// What the device announced in its hello (16 kHz, 60 ms unless it said otherwise).
    public var uplink: AudioFormat

    public init(
        gateway: String, userId: String, conversationId: String, deviceId: String, uplink: AudioFormat = .uplink
    ) {
        self.gateway = gateway
        self.userId = userId
        self.conversationId = conversationId
        self.deviceId = deviceId
        self.uplink = uplink
    }
}

/// The routing table of device sessions: a hash per session (`Keyspace.Voice.route`) that only the
/// gateway holding the session's socket writes, with a TTL it refreshes while the device is connected.
/// Voice-workers read it when a session's first event reaches them, and its tools at each turn (so a
/// session taken over by another instance still has them).
public struct VoiceRouteStore: Sendable {
    enum Field {
        static let gateway = "gateway"
        static let user = "user"
        static let conversation = "conversation"
        static let device = "device"
        static let sampleRate = "sample_rate"
        static let frameDuration = "frame_duration"
        /// The device's MCP tools (a JSON array of `DeviceTool`), stored after its `tools/list`.
        static let tools = "tools"
    }

    let redis: RedisClient

    public init(redis: RedisClient) {
        self.redis = redis
    }

    // MARK: the gateway's side

    public func open(_ route: VoiceRoute, session: String, ttlSeconds: Int) async throws {
        let key = RedisArgument(Keyspace.Voice.route(session))
        _ = try await redis.pipeline([
            [
                "HSET", key, RedisArgument(Field.gateway), RedisArgument(route.gateway), RedisArgument(Field.user),
                RedisArgument(route.userId), RedisArgument(Field.conversation), RedisArgument(route.conversationId),
                RedisArgument(Field.device), RedisArgument(route.deviceId), RedisArgument(Field.sampleRate),
                RedisArgument(route.uplink.sampleRate), RedisArgument(Field.frameDuration),
                RedisArgument(route.uplink.frameDurationMilliseconds),
            ],
            ["EXPIRE", key, RedisArgument(ttlSeconds)],
        ])
    }

    public func refresh(session: String, ttlSeconds: Int) async throws {
        _ = try await redis.send("EXPIRE", RedisArgument(Keyspace.Voice.route(session)), RedisArgument(ttlSeconds))
    }

    public func close(session: String) async throws {
        _ = try await redis.send("DEL", RedisArgument(Keyspace.Voice.route(session)))
    }

    public func storeTools(_ tools: [DeviceTool], session: String) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        _ = try await redis.send(
            "HSET", RedisArgument(Keyspace.Voice.route(session)), RedisArgument(Field.tools),
            RedisArgument(bytes: Array(try encoder.encode(tools))))
    }

    // MARK: the voice-worker's side

    /// Nil when the session has no route (the device is gone, or its entry expired).
    public func route(session: String) async throws -> VoiceRoute? {
        let reply = try await redis.send("HGETALL", RedisArgument(Keyspace.Voice.route(session)))
        guard let items = reply.array, !items.isEmpty else { return nil }
        var fields: [String: String] = [:]
        var index = 0
        while index + 1 < items.count {
            if let key = items[index].string, let value = items[index + 1].string { fields[key] = value }
            index += 2
        }
        guard let gateway = fields[Field.gateway], let user = fields[Field.user],
            let conversation = fields[Field.conversation]
        else { return nil }
        let uplink = AudioFormat(
            sampleRate: fields[Field.sampleRate].flatMap(Int.init) ?? AudioFormat.uplink.sampleRate,
            frameDurationMilliseconds: fields[Field.frameDuration].flatMap(Int.init)
                ?? AudioFormat.uplink.frameDurationMilliseconds)
        return VoiceRoute(
            gateway: gateway, userId: user, conversationId: conversation, deviceId: fields[Field.device] ?? "",
            uplink: uplink)
    }

    /// The device's MCP tools as its gateway stored them (none: the device has no MCP, or has not
    /// listed them yet).
    public func tools(session: String) async throws -> [DeviceTool] {
        let reply = try await redis.send(
            "HGET", RedisArgument(Keyspace.Voice.route(session)), RedisArgument(Field.tools))
        guard let text = reply.string, !text.isEmpty else { return [] }
        return try JSONDecoder().decode([DeviceTool].self, from: Data(text.utf8))
    }
}
