import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis

/// Reads a channel's recoverable history from Redis.
public struct ChannelHistory: Sendable {
    let redis: RedisClient

    public init(redis: RedisClient) {
        self.redis = redis
    }

    /// `read`, tried again while Redis comes back, for up to `patience`: a follower repairing its feed
    /// right after its subscription was restored often asks before the command connection reconnected
    /// (or while Redis still loads its data). Throws the last error only once that time is up.
    public func readWhenBack(
        _ channel: SwitchboardContracts.Channel, after: Int64?, patience: Duration = .seconds(15)
    ) async throws -> (top: (offset: Int64, epoch: String)?, events: [ChannelWire.Message]) {
        let deadline = ContinuousClock.now + patience
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(2))
        var attempt = 0
        while true {
            do {
                return try await read(channel, after: after)
            } catch {
                attempt += 1
                guard ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: backoff.delay(attempt: attempt))
            }
        }
    }

    /// The channel's newest offset and epoch (nil for a channel with no history), and the events after
    /// `after` (at most `limit`), read in one round trip.
    public func read(_ channel: SwitchboardContracts.Channel, after: Int64?, limit: Int = 1000) async throws
        -> (top: (offset: Int64, epoch: String)?, events: [ChannelWire.Message])
    {
        var commands: [[RedisArgument]] = [
            [
                "HMGET", RedisArgument(Keyspace.ClientChannel.meta(channel)),
                RedisArgument(ChannelWire.MetaField.offset),
                RedisArgument(ChannelWire.MetaField.epoch),
            ]
        ]
        if let after {
            commands.append([
                "XRANGE", RedisArgument(Keyspace.ClientChannel.stream(channel)), RedisArgument("\(after + 1)-0"), "+",
                "COUNT",
                RedisArgument(limit),
            ])
        }
        let replies = try await redis.pipeline(commands)
        let meta = replies[0].array ?? []
        guard meta.count == 2, let offset = meta[0].integer, let epoch = meta[1].string else { return (nil, []) }
        var events: [ChannelWire.Message] = []
        for entry in replies.count > 1 ? (replies[1].array ?? []) : [] {
            guard let parts = entry.array, parts.count == 2, let id = parts[0].string,
                let entryOffset = Int64(id.split(separator: "-").first ?? ""), let fields = parts[1].array
            else { continue }
            var frame: String?
            var type = ""
            var createdAt: Int64 = 0
            for index in stride(from: 0, to: fields.count - 1, by: 2) {
                switch fields[index].string {
                case ChannelWire.StreamField.frameJSON: frame = fields[index + 1].string
                case ChannelWire.StreamField.frameType: type = fields[index + 1].string ?? ""
                case ChannelWire.StreamField.createdAt: createdAt = fields[index + 1].string.flatMap { Int64($0) } ?? 0
                default: break
                }
            }
            if let frame {
                events.append(
                    .init(offset: entryOffset, epoch: epoch, frameType: type, createdAt: createdAt, frameJSON: frame))
            }
        }
        return ((offset, epoch), events)
    }
}
