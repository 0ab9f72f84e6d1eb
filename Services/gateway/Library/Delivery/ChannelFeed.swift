import Logging
import NIOCore
import Metrics
import Synchronization
import SwitchboardContracts
import SwitchboardRedis

enum DeliveryMetrics {
    static let delivered = Counter(label: "sb_gateway_events_delivered_total")
    static let droppedEphemeral = Counter(
        label: "sb_gateway_events_dropped_total", dimensions: [("reason", "slow_ephemeral")])
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
    func read(_ channel: SwitchboardContracts.Channel, after: Int64?, limit: Int = 1000) async throws
        -> (top: (offset: Int64, epoch: String)?, events: [ChannelSequencer.Event])
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

/// Where a feed's frames go: a WebSocket session or an SSE stream. Called on the feed's event loop
/// with the feed's lock held, so it must only queue (never wait).
protocol FrameSink: Sendable {
    /// Queues one frame; false if it could not be queued (the sink is closing).
    func deliver(_ message: ChannelWire.Message) -> Bool
    /// Queues a live frame shared with the channel's other followers; by default rendered like any other.
    func deliver(shared: SharedFrame) -> Bool
    /// The client missed events and must re-sync.
    func insufficientState(_ reason: String)
}

extension FrameSink {
    func deliver(shared: SharedFrame) -> Bool { deliver(shared.event.message) }
}

/// One client's following of one channel: live events from the gateway's `DeliveryHub` merged with
/// the recovered history, every offset once and in order. Closing it stops the delivery.
final class ChannelFeed: Sendable {
    let channel: SwitchboardContracts.Channel
    /// The event loop its live events are delivered on: the client connection's own.
    let loop: any EventLoop
    private let sink: any FrameSink
    private let sequencer = Mutex(ChannelSequencer())
    private let hub: DeliveryHub
    /// Set while the frames `open` queued from off the loop (its answer, the recovered events) have not
    /// been written yet: they reach the connection through `loop.execute`, so a live event the loop
    /// delivered directly meanwhile would overtake them (seen as offsets 34…47 before 16…33 when a
    /// client resumed into a burst). Live events go through `loop.execute` too until it is cleared.
    private let handingOver = Atomic<Bool>(false)

    init(channel: SwitchboardContracts.Channel, loop: any EventLoop, sink: any FrameSink, hub: DeliveryHub) {
        self.channel = channel
        self.loop = loop
        self.sink = sink
        self.hub = hub
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
        _ channel: SwitchboardContracts.Channel, since: StreamPosition?, hub: DeliveryHub, history: ChannelHistory,
        sink: any FrameSink, loop: any EventLoop, whileSubscribed: () async throws -> Void = {},
        announce: (_ recovered: Bool, _ position: StreamPosition?) -> Void = { _, _ in }
    ) async throws -> Opened {
        let feed = ChannelFeed(channel: channel, loop: loop, sink: sink, hub: hub)
        try await hub.add(feed)
        DeliveryMetrics.subscriptions.increment()
        let read: (top: (offset: Int64, epoch: String)?, events: [ChannelSequencer.Event])
        do {
            try await whileSubscribed()
            read = try await history.read(channel, after: since?.offset)
        } catch {
            await feed.close()
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
            if !loop.inEventLoop { feed.handingOver.store(true, ordering: .sequentiallyConsistent) }
            return (recovered, position)
        }
        // Runs after every frame queued above, and before any live event deferred meanwhile is written.
        if feed.handingOver.load(ordering: .sequentiallyConsistent) {
            loop.execute { feed.handingOver.store(false, ordering: .sequentiallyConsistent) }
        }
        if since != nil { (recovered ? DeliveryMetrics.recovered : DeliveryMetrics.notRecovered).increment() }
        return Opened(feed: feed, recovered: recovered, position: position)
    }

    /// A live event, on this feed's loop.
    func receive(_ frame: SharedFrame) {
        let message = frame.event.message
        if message.isEphemeral {
            _ = sink.deliver(shared: frame)
            return
        }
        sequencer.withLock { sequencer in
            switch sequencer.receiveLive(message) {
            case .deliver where handingOver.load(ordering: .sequentiallyConsistent):
                let deferred = NIOLoopBound(frame, eventLoop: loop)
                loop.execute { _ = self.sink.deliver(shared: deferred.value) }
            case .deliver:
                _ = sink.deliver(shared: frame)
            case .hold, .dropDuplicate:
                break
            case .gap(let expected, let got):
                DeliveryMetrics.gaps.increment()
                sink.insufficientState("missed events of \(channel): expected offset \(expected), got \(got)")
            }
        }
    }

    func close() async {
        DeliveryMetrics.subscriptions.decrement()
        await hub.remove(self)
    }
}

/// The feeds one connection follows. Following a channel again replaces (and closes) its feed, so a
/// client can re-sync without reconnecting.
final class FollowedFeeds: Sendable {
    private let feeds = Mutex<[SwitchboardContracts.Channel: ChannelFeed]>([:])

    var channels: [SwitchboardContracts.Channel] { feeds.withLock { Array($0.keys) } }

    func contains(_ channel: SwitchboardContracts.Channel) -> Bool { feeds.withLock { $0[channel] != nil } }

    func replace(with feed: ChannelFeed) async {
        let previous = feeds.withLock { feeds in
            defer { feeds[feed.channel] = feed }
            return feeds[feed.channel]
        }
        await previous?.close()
    }

    func remove(_ channel: SwitchboardContracts.Channel) async {
        await feeds.withLock { $0.removeValue(forKey: channel) }?.close()
    }

    func removeAll() async {
        let all = feeds.withLock { feeds in
            defer { feeds = [:] }
            return Array(feeds.values)
        }
        for feed in all { await feed.close() }
    }
}
