import Logging
import Metrics
import Synchronization
import SwitchboardContracts
import SwitchboardRedis

enum DeliveryMetrics {
    static let delivered = Counter(label: "sb_gateway_events_delivered_total")
    static let droppedEphemeral = Counter(label: "sb_gateway_events_dropped_total", dimensions: [("reason", "slow_ephemeral")])
    static let recovered = Counter(label: "sb_gateway_recoveries_total", dimensions: [("recovered", "true")])
    static let notRecovered = Counter(label: "sb_gateway_recoveries_total", dimensions: [("recovered", "false")])
    static let gaps = Counter(label: "sb_gateway_insufficient_state_total")
    static let slowDisconnects = Counter(label: "sb_gateway_slow_disconnects_total")
    static let subscriptions = Meter(label: "sb_gateway_subscriptions")
    /// Event creation (its envelope's time) → the frame written to the client's socket.
    static let deliveryLatency = Timer(label: "sb_gateway_event_delivery_seconds")

    static func recordWritten(createdAt: Int64) {
        guard createdAt > 0 else { return }
        deliveryLatency.recordMicroseconds(max(0, Clock.epochMicroseconds() - createdAt))
    }
}

/// Reads a channel's recoverable history from Redis.
struct ChannelHistory: Sendable {
    let redis: RedisClient

    /// The channel's newest offset and epoch (nil for a channel with no history), and the events after
    /// `after` (at most `limit`), read in one round trip.
    func read(_ channel: Channel, after: Int64?, limit: Int = 1000) async throws
        -> (top: (offset: Int64, epoch: String)?, events: [ChannelSequencer.Event])
    {
        var commands: [[RedisArgument]] = [["HMGET", RedisArgument(ChannelWire.metaKey(channel)), "offset", "epoch"]]
        if let after {
            commands.append([
                "XRANGE", RedisArgument(ChannelWire.streamKey(channel)), RedisArgument("\(after + 1)-0"), "+", "COUNT",
                RedisArgument(limit),
            ])
        }
        let replies = try await redis.pipeline(commands)
        let meta = replies[0].array ?? []
        guard meta.count == 2, let offset = meta[0].integer, let epoch = meta[1].string else { return (nil, []) }
        var events: [ChannelSequencer.Event] = []
        for entry in replies.count > 1 ? (replies[1].array ?? []) : [] {
            guard let parts = entry.array, parts.count == 2, let id = parts[0].string,
                let entryOffset = Int64(id.split(separator: "-").first ?? ""), let fields = parts[1].array
            else { continue }
            var frame: String?
            var type = ""
            var createdAt: Int64 = 0
            for index in stride(from: 0, to: fields.count - 1, by: 2) {
                switch fields[index].string {
                case "f": frame = fields[index + 1].string
                case "t": type = fields[index + 1].string ?? ""
                case "c": createdAt = fields[index + 1].string.flatMap { Int64($0) } ?? 0
                default: break
                }
            }
            if let frame { events.append(
                    .init(offset: entryOffset, epoch: epoch, frameType: type, createdAt: createdAt, frameJSON: frame)) }
        }
        return ((offset, epoch), events)
    }
}

/// Where a feed's frames go: a WebSocket session or an SSE stream. Called with the feed's lock held,
/// so it must only queue (never wait).
protocol FrameSink: Sendable {
    /// Queues one frame; false if it could not be queued (the sink is closing).
    func deliver(_ message: ChannelWire.Message) -> Bool
    /// The client missed events and must re-sync.
    func insufficientState(_ reason: String)
}

/// One client's following of one channel: live events from Redis PUB/SUB merged with the recovered
/// history, every offset once and in order. Closing it unsubscribes.
final class ChannelFeed: Sendable {
    let channel: Channel
    private let sink: any FrameSink
    private let sequencer = Mutex(ChannelSequencer())
    private let token = Mutex<RedisSubscriptionToken?>(nil)

    private init(channel: Channel, sink: any FrameSink) {
        self.channel = channel
        self.sink = sink
    }

    struct Opened: Sendable {
        var feed: ChannelFeed
        var recovered: Bool
        /// The position the client is now at (nil for a channel with no history yet).
        var position: StreamPosition?
    }

    /// Subscribes first, then reads what was missed since `since`, then goes live: no gap, no duplicate.
    /// `announce` learns the outcome just before the recovered events are queued, so an answer it
    /// queues reaches the client ahead of them. `whileSubscribed` runs once the live subscription is in
    /// place and before history is read: a state read there is never older than the live events that follow.
    static func open(
        _ channel: Channel, since: StreamPosition?, subscriber: RedisSubscriber, history: ChannelHistory,
        sink: any FrameSink, whileSubscribed: () async throws -> Void = {},
        announce: (_ recovered: Bool, _ position: StreamPosition?) -> Void = { _, _ in }
    ) async throws -> Opened {
        let feed = ChannelFeed(channel: channel, sink: sink)
        let subscription = try await subscriber.subscribe(ChannelWire.liveChannel(channel)) { [weak feed] bytes in
            guard let feed, let message = ChannelWire.decode(bytes) else { return }
            feed.receive(message)
        }
        feed.token.withLock { $0 = subscription }
        DeliveryMetrics.subscriptions.increment()
        let read: (top: (offset: Int64, epoch: String)?, events: [ChannelSequencer.Event])
        do {
            try await whileSubscribed()
            read = try await history.read(channel, after: since?.offset)
        } catch {
            await feed.close(subscriber: subscriber)
            throw error
        }
        let (recovered, position) = feed.sequencer.withLock { sequencer -> (Bool, StreamPosition?) in
            let result = sequencer.finishRecovery(since: since, top: read.top, history: read.events)
            let (recovered, events): (Bool, [ChannelSequencer.Event]) =
                switch result {
                case .recovered(let events): (true, events)
                case .notRecovered(let live): (false, live)
                }
            let position = sequencer.epoch.map { StreamPosition(epoch: $0, offset: sequencer.lastOffset) }
            announce(recovered, position)
            for event in events { _ = sink.deliver(event) }
            return (recovered, position)
        }
        if since != nil { (recovered ? DeliveryMetrics.recovered : DeliveryMetrics.notRecovered).increment() }
        return Opened(feed: feed, recovered: recovered, position: position)
    }

    private func receive(_ message: ChannelWire.Message) {
        if message.isEphemeral {
            _ = sink.deliver(message)
            return
        }
        sequencer.withLock { sequencer in
            switch sequencer.receiveLive(message) {
            case .deliver:
                _ = sink.deliver(message)
            case .hold, .dropDuplicate:
                break
            case .gap(let expected, let got):
                DeliveryMetrics.gaps.increment()
                sink.insufficientState("missed events of \(channel): expected offset \(expected), got \(got)")
            }
        }
    }

    func close(subscriber: RedisSubscriber) async {
        if let subscription = token.withLock({ token in
            defer { token = nil }
            return token
        }) {
            DeliveryMetrics.subscriptions.decrement()
            await subscriber.unsubscribe(subscription)
        }
    }
}

/// The feeds one connection follows. Following a channel again replaces (and closes) its feed, so a
/// client can re-sync without reconnecting.
final class FollowedFeeds: Sendable {
    private let feeds = Mutex<[Channel: ChannelFeed]>([:])

    var channels: [Channel] { feeds.withLock { Array($0.keys) } }

    func contains(_ channel: Channel) -> Bool { feeds.withLock { $0[channel] != nil } }

    func replace(with feed: ChannelFeed, subscriber: RedisSubscriber) async {
        let previous = feeds.withLock { feeds in
            defer { feeds[feed.channel] = feed }
            return feeds[feed.channel]
        }
        await previous?.close(subscriber: subscriber)
    }

    func remove(_ channel: Channel, subscriber: RedisSubscriber) async {
        await feeds.withLock { $0.removeValue(forKey: channel) }?.close(subscriber: subscriber)
    }

    func removeAll(subscriber: RedisSubscriber) async {
        let all = feeds.withLock { feeds in
            defer { feeds = [:] }
            return Array(feeds.values)
        }
        for feed in all { await feed.close(subscriber: subscriber) }
    }
}
