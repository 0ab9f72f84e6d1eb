import Logging
import NIOCore
import Metrics
import Synchronization
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTracing

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
    private let history: ChannelHistory
    /// Set while the frames `open` queued from off the loop (its answer, the recovered events) have not
    /// been written yet: they reach the connection through `loop.execute`, so a live event the loop
    /// delivered directly meanwhile would overtake them (seen as offsets 34…47 before 16…33 when a
    /// client resumed into a burst). Live events go through `loop.execute` too until it is cleared.
    private let handingOver = Atomic<Bool>(false)

    init(
        channel: SwitchboardContracts.Channel, loop: any EventLoop, sink: any FrameSink, hub: DeliveryHub,
        history: ChannelHistory
    ) {
        self.channel = channel
        self.loop = loop
        self.sink = sink
        self.hub = hub
        self.history = history
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
        let feed = ChannelFeed(channel: channel, loop: loop, sink: sink, hub: hub, history: history)
        try await hub.add(feed)
        GatewayMetrics.subscriptions.increment()
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
        if since != nil { (recovered ? GatewayMetrics.recovered : GatewayMetrics.notRecovered).increment() }
        return Opened(feed: feed, recovered: recovered, position: position)
    }

    /// A live event, on this feed's loop.
    func receive(_ frame: SharedFrame) {
        let message = frame.event.message
        if message.isEphemeral {
            deliverLive(frame)
            return
        }
        let repairFrom = sequencer.withLock { sequencer -> (offset: Int64, epoch: String?)? in
            switch sequencer.receiveLive(message) {
            case .deliver where handingOver.load(ordering: .sequentiallyConsistent):
                let deferred = NIOLoopBound(frame, eventLoop: loop)
                loop.execute { self.deliverLive(deferred.value) }
            case .deliver:
                deliverLive(frame)
            case .hold, .dropDuplicate:
                break
            case .gap:
                return sequencer.beginRepair(holding: message)
            }
            return nil
        }
        if let repairFrom { repair(from: repairFrom) }
    }

    /// Hands a live frame to the client's connection. With tracing on, that is a `send <channel kind>`
    /// span from the gateway's receipt of the event to the hand-off, a child of the notifier's publish.
    private func deliverLive(_ frame: SharedFrame) {
        guard sink.deliver(shared: frame), let parent = frame.event.publishedBy else { return }
        let message = frame.event.message
        Tracing.record(
            "send \(channel.kind.rawValue)", kind: .producer, parent: .remote(parent), start: frame.event.received,
            attributes: [
                ("switchboard.channel.kind", .string(channel.kind.rawValue)),
                ("switchboard.frame.type", .string(message.frameType)),
                ("switchboard.channel.offset", .int(message.offset)),
            ])
    }

    /// The live subscription was made again (Redis came back): what was published meanwhile is only in
    /// the channel's stream.
    func subscriptionRestored() {
        guard let from = sequencer.withLock({ $0.beginRepair() }) else { return }
        repair(from: from)
    }

    /// Reads what the live events skipped from the channel's stream and delivers it, then the live events
    /// held meanwhile, in order. Only when the stream no longer has it (trimmed, expired, another epoch),
    /// or Redis stays unreadable for 15 s, is the client told to re-sync (`insufficientState`, 4003 for a
    /// chat socket).
    private func repair(from: (offset: Int64, epoch: String?)) {
        GatewayMetrics.repairs.increment()
        Task {
            let read = try? await history.readWhenBack(channel, after: from.offset)
            loop.execute {
                self.sequencer.withLock { sequencer in
                    guard let read else {
                        GatewayMetrics.gaps.increment()
                        self.sink.insufficientState("missed events of \(self.channel) could not be read again")
                        return
                    }
                    switch sequencer.finishRepair(from: from, top: read.top, history: read.events) {
                    case .recovered(let events):
                        for event in events { _ = self.sink.deliver(event) }
                    case .notRecovered:
                        GatewayMetrics.gaps.increment()
                        self.sink.insufficientState(
                            "missed events of \(self.channel) after offset \(from.offset) are no longer kept")
                    }
                }
            }
        }
    }

    func close() async {
        GatewayMetrics.subscriptions.decrement()
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
