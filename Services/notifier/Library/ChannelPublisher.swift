import Foundation
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardTracing

/// Publishes client events to their channel in Redis with one atomic script: at most once per event id,
/// a per-channel offset and epoch, a capped stream for recovery, then PUBLISH to the live channel (SPUBLISH
/// in a Redis Cluster: the live channel shares its keys' hash tag, so it stays on their shard).
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
    /// channel, frame type, creation time (µs), publish command (`RedisClient.publishCommand(for:)`),
    /// traceparent (`ChannelWire.noTrace` for none). Stream entries are `<offset>-1 {t: type, c: created, f: frame}`
    /// and the published message is `ChannelWire`'s form, both laid out by `ChannelWire` itself.
    ///
    /// The stream entry is the first write: if `XADD` fails nothing has changed, so the retry is not taken
    /// for a duplicate and no offset is skipped. After a first write Redis lets a script finish even past
    /// `maxmemory`, so the offset and the seen marker are never missing behind a stored entry.
    static let script = RedisScript(
        """
        if redis.call('EXISTS', KEYS[3]) == 1 then
          return {0}
        end
        local meta = redis.call('HMGET', KEYS[1], '\(ChannelWire.MetaField.epoch)', '\(ChannelWire.MetaField.offset)')
        local epoch = meta[1] or ARGV[4]
        local offset = (tonumber(meta[2]) or 0) + 1
        redis.call('XADD', KEYS[2], 'MAXLEN', '=', ARGV[2], offset .. '-1', \
        '\(ChannelWire.StreamField.frameType)', ARGV[6], '\(ChannelWire.StreamField.createdAt)', ARGV[7], \
        '\(ChannelWire.StreamField.frameJSON)', ARGV[1])
        redis.call('HSET', KEYS[1], '\(ChannelWire.MetaField.epoch)', epoch, '\(ChannelWire.MetaField.offset)', offset)
        redis.call('SET', KEYS[3], '1', 'EX', ARGV[3])
        redis.call('EXPIRE', KEYS[1], ARGV[3])
        redis.call('EXPIRE', KEYS[2], ARGV[3])
        redis.call(ARGV[8], ARGV[5], \
        \(ChannelWire.luaExpression(offset: "offset", epoch: "epoch", frameType: "ARGV[6]", createdAt: "ARGV[7]", traceparent: "ARGV[9]", frameJSON: "ARGV[1]")))
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

    /// The only `maxmemory-policy` under which channels keep their guarantees: an evicted seen marker
    /// publishes an event twice, an evicted meta hash restarts a channel's offsets under its old epoch.
    public static let requiredEvictionPolicy = "noeviction"

    /// Redis' `maxmemory-policy`, from `INFO memory` (managed Redis often renames `CONFIG`).
    public func evictionPolicy() async throws -> String {
        let info = try await redis.send("INFO", "memory")
        guard let text = info.string,
            let line = text.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("maxmemory_policy:") })
        else {
            throw RedisError(.protocolViolation, "INFO memory has no maxmemory_policy")
        }
        return String(line.dropFirst("maxmemory_policy:".count)).trimmingCharacters(in: .whitespaces)
    }

    /// One client event to publish.
    public struct Publication: Sendable {
        public var eventID: UUID
        public var channel: Channel
        public var frameType: String
        public var createdAt: Int64
        /// The client frame's UTF-8 JSON.
        public var frameJSON: [UInt8]
        public var ephemeral: Bool

        public init(
            eventID: UUID, channel: Channel, frameType: String, createdAt: Int64, frameJSON: [UInt8], ephemeral: Bool
        ) {
            self.eventID = eventID
            self.channel = channel
            self.frameType = frameType
            self.createdAt = createdAt
            self.frameJSON = frameJSON
            self.ephemeral = ephemeral
        }
    }

    /// Publishes in order, in one round trip: Redis runs a connection's pipelined commands one after
    /// another, so a channel's events keep their order and offsets. Throws at the first failed command;
    /// those before it took effect, and publishing them again is harmless (the seen marker).
    public func publish(_ publications: [Publication]) async throws -> [Outcome] {
        let traces = PublishSpans(events: publications.count)
        let commands = publications.indices.map {
            command(for: publications[$0], traceparent: traces?.traceparent(ofEvent: $0))
        }
        let replies: [RESPValue]
        do {
            do {
                replies = try await redis.pipeline(commands)
            } catch let error as RedisError where error.code == .noScript {
                // Redis lost its scripts (restarted): load it and try again; nothing of the batch ran.
                try await prepare()
                replies = try await redis.pipeline(commands)
            }
            traces?.end(commands, error: nil)
        } catch {
            traces?.end(commands, error: error)
            throw error
        }
        return try zip(publications, replies).map { publication, reply in
            if publication.ephemeral { return .ephemeral }
            guard let parts = reply.array, let flag = parts.first?.integer else {
                throw RedisError(.protocolViolation, "publish script answered \(reply)")
            }
            if flag == 0 { return .duplicate }
            guard parts.count == 3, let offset = parts[1].integer, let epoch = parts[2].string else {
                throw RedisError(.protocolViolation, "publish script answered \(reply)")
            }
            return .published(offset: offset, epoch: epoch)
        }
    }

    private func command(for publication: Publication, traceparent: String?) -> [RedisArgument] {
        if publication.ephemeral {
            let wire = ChannelWire.encodeEphemeral(
                frameType: publication.frameType, createdAt: publication.createdAt, traceparent: traceparent,
                frameJSON: publication.frameJSON)
            let live = Keyspace.ClientChannel.live(publication.channel)
            return [redis.publishCommand(for: live), RedisArgument(live), RedisArgument(bytes: wire)]
        }
        let channel = publication.channel
        let live = Keyspace.ClientChannel.live(channel)
        return [
            "EVALSHA", RedisArgument(Self.script.sha1), "3",
            RedisArgument(Keyspace.ClientChannel.meta(channel)), RedisArgument(Keyspace.ClientChannel.stream(channel)),
            RedisArgument(Keyspace.ClientChannel.seen(channel, eventID: publication.eventID)),
            RedisArgument(bytes: publication.frameJSON), RedisArgument(limits.streamLength),
            RedisArgument(limits.streamTTLSeconds),
            RedisArgument(Self.newEpoch()), RedisArgument(live),
            RedisArgument(publication.frameType),
            RedisArgument(publication.createdAt),
            redis.publishCommand(for: live),
            RedisArgument(traceparent ?? ChannelWire.noTrace),
        ]
    }

    static func newEpoch() -> String {
        String(UUID().uuidString.lowercased().prefix(8))
    }
}
