import Foundation
import SwitchboardContracts
import SwitchboardRedis

/// Publishes client events to their channel in Redis with one atomic script: at most once per event id,
/// a per-channel offset and epoch, a capped stream for recovery, then PUBLISH to the live channel.
public struct ChannelPublisher: Sendable {
    public struct Limits: Sendable {
        /// Events kept per channel for recovery.
        public var streamLength = 1000
        /// The history of a channel expires this long after its last event (and with it the epoch, so
        /// clients behind it reload from durable history).
        public var streamTTLSeconds = 3600

        public init() {}
    }

    public enum Outcome: Sendable, Equatable {
        case published(offset: Int64, epoch: String)
        case duplicate
        case ephemeral
    }

    /// KEYS: meta hash, stream, seen marker. ARGV: frame JSON, max length, TTL, candidate epoch, live
    /// channel, frame type, creation time (µs). Stream entries are `<offset>-1 {t: type, c: created, f: frame}`.
    static let script = RedisScript(
        """
        if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[3]) == false then
          return {0}
        end
        local epoch = redis.call('HGET', KEYS[1], 'epoch')
        if not epoch then
          epoch = ARGV[4]
          redis.call('HSET', KEYS[1], 'epoch', epoch)
        end
        local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
        redis.call('XADD', KEYS[2], 'MAXLEN', '=', ARGV[2], offset .. '-1', 't', ARGV[6], 'c', ARGV[7], 'f', ARGV[1])
        redis.call('EXPIRE', KEYS[1], ARGV[3])
        redis.call('EXPIRE', KEYS[2], ARGV[3])
        redis.call('PUBLISH', ARGV[5], offset .. ' ' .. epoch .. ' ' .. ARGV[6] .. ' ' .. ARGV[7] .. ' ' .. ARGV[1])
        return {1, offset, epoch}
        """)

    private let redis: RedisClient
    private let limits: Limits

    public init(redis: RedisClient, limits: Limits = Limits()) {
        self.redis = redis
        self.limits = limits
    }

    public func prepare() async throws {
        try await redis.load(Self.script)
    }

    public func publish(
        eventID: UUID, channel: Channel, frameType: String, createdAt: Int64, frameJSON: String, ephemeral: Bool
    ) async throws -> Outcome {
        if ephemeral {
            let message = ChannelWire.Message(
                offset: 0, epoch: "-", frameType: frameType, createdAt: createdAt, frameJSON: frameJSON)
            try await redis.send(
                "PUBLISH", RedisArgument(ChannelWire.liveChannel(channel)), RedisArgument(ChannelWire.encode(message)))
            return .ephemeral
        }
        let reply = try await redis.run(
            Self.script,
            keys: [
                RedisArgument(ChannelWire.metaKey(channel)), RedisArgument(ChannelWire.streamKey(channel)),
                RedisArgument(ChannelWire.seenKey(channel, eventID: eventID)),
            ],
            arguments: [
                RedisArgument(frameJSON), RedisArgument(limits.streamLength), RedisArgument(limits.streamTTLSeconds),
                RedisArgument(Self.newEpoch()), RedisArgument(ChannelWire.liveChannel(channel)), RedisArgument(frameType),
                RedisArgument(createdAt),
            ])
        guard let parts = reply.array, let flag = parts.first?.integer else {
            throw RedisError(.protocolViolation, "publish script answered \(reply)")
        }
        if flag == 0 { return .duplicate }
        guard parts.count == 3, let offset = parts[1].integer, let epoch = parts[2].string else {
            throw RedisError(.protocolViolation, "publish script answered \(reply)")
        }
        return .published(offset: offset, epoch: epoch)
    }

    static func newEpoch() -> String {
        String(UUID().uuidString.lowercased().prefix(8))
    }
}
