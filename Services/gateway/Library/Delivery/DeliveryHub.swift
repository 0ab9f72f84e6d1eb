import Metrics
import NIOCore
import Synchronization
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardTracing

/// One channel event as the gateway received it: decoded once, its stamped JSON frame built once,
/// shared by every follower on every event loop.
final class HubEvent: Sendable {
    let message: ChannelWire.Message
    /// The frame a plain follower gets: the stored frame with its offset and epoch.
    let stamped: ByteBuffer

    /// The seed-000 SSE form, made by the first SSE follower and shared by the rest.
    private let serverSentEventText = Mutex<String?>(nil)

    /// With tracing on: the notifier's span that published the event, and when this gateway received it
    /// (the start of its writes' spans).
    let publishedBy: SpanContext?
    let received: UInt64

    init(_ message: ChannelWire.Message) {
        self.message = message
        self.stamped = ByteBuffer(string: message.stampedJSON)
        publishedBy = Tracing.isEnabled ? message.traceparent.flatMap(SpanContext.init(traceparent:)) : nil
        received = publishedBy == nil ? 0 : Tracing.now()
    }

    var serverSentEvent: String {
        serverSentEventText.withLock { text in
            if let text { return text }
            let made = ChatCentreDialect.serverSentEvent(message)
            text = made
            return made
        }
    }
}

/// A `HubEvent` on one event loop: its compressed form is made there at most once, for every
/// follower on that loop that negotiated permessage-deflate.
final class SharedFrame {
    let event: HubEvent
    private var deflated: ByteBuffer??

    init(_ event: HubEvent) {
        self.event = event
    }

    /// The frame deflated with a 15-bit window, or nil when it is too small to gain.
    func deflated(allocator: ByteBufferAllocator) -> ByteBuffer? {
        if let deflated { return deflated }
        var made: ByteBuffer?
        if event.stamped.readableBytes >= LoopDeflater.minimumCompressedSize {
            made = try? LoopDeflater.current?.compress(event.stamped, windowBits: 15, allocator: allocator)
            if made != nil { GatewayMetrics.hubCompressions.increment() }
        }
        deflated = .some(made)
        return made
    }
}

/// Where live channel messages come from: Redis PUB/SUB in the gateway, a fake in unit tests.
protocol LiveSource: Sendable {
    /// Calls `handler` with every message of `channel` from the moment this returns; the result ends that.
    func follow(_ channel: String, handler: @escaping @Sendable ([UInt8]) -> Void) async throws -> LiveFollow
    /// Calls `handler` each time the subscriptions were made again after the connection dropped: what
    /// was published in between was not delivered.
    func onResubscribed(_ handler: @escaping @Sendable () -> Void)
}

/// Ends one `LiveSource.follow`.
struct LiveFollow: Sendable {
    let stop: @Sendable () async -> Void
}

extension RedisSubscriber: LiveSource {
    func follow(_ channel: String, handler: @escaping @Sendable ([UInt8]) -> Void) async throws -> LiveFollow {
        let token = try await subscribe(channel, handler: handler)
        return LiveFollow { await self.unsubscribe(token) }
    }
}

/// The gateway's fan-out. One Redis PUB/SUB subscription per channel, whatever the number of local
/// followers; each message is decoded once, handed to each event loop that has followers of its
/// channel once (batched with whatever else arrived meanwhile), and written there to every follower.
final class DeliveryHub: Sendable {
    /// PUB/SUB itself; also used directly by what is not a channel feed (a device's voice downlink).
    let source: any LiveSource

    private struct ChannelEntry {
        var followers = 0
        /// Completes once Redis has the subscription; every follower waits for it before reading history.
        var ready: Task<LiveFollow, any Error>
    }

    private let channels = Mutex<[String: ChannelEntry]>([:])
    private let shards = Mutex<[ObjectIdentifier: LoopShard]>([:])

    init(source: any LiveSource) {
        self.source = source
        source.onResubscribed { [weak self] in self?.subscriptionsRestored() }
    }

    /// Every feed reads what it missed while PUB/SUB was down.
    private func subscriptionsRestored() {
        for shard in shards.withLock({ Array($0.values) }) {
            for feed in shard.allFeeds { feed.subscriptionRestored() }
        }
    }

    /// Starts delivering `feed`'s channel to it, and returns once the live subscription is in place.
    func add(_ feed: ChannelFeed) async throws {
        let key = Keyspace.ClientChannel.live(feed.channel)
        shard(for: feed.loop).add(feed, key: key)
        let ready = channels.withLock { channels -> Task<LiveFollow, any Error> in
            if var entry = channels[key] {
                entry.followers += 1
                channels[key] = entry
                return entry.ready
            }
            let ready = Task { [source] in
                try await source.follow(key) { [weak self] bytes in self?.dispatch(key: key, bytes: bytes) }
            }
            channels[key] = ChannelEntry(followers: 1, ready: ready)
            return ready
        }
        do {
            _ = try await ready.value
        } catch {
            await remove(feed)
            throw error
        }
    }

    func remove(_ feed: ChannelFeed) async {
        let key = Keyspace.ClientChannel.live(feed.channel)
        guard shard(for: feed.loop).remove(feed, key: key) else { return }
        let last = channels.withLock { channels -> Task<LiveFollow, any Error>? in
            guard var entry = channels[key] else { return nil }
            entry.followers -= 1
            if entry.followers > 0 {
                channels[key] = entry
                return nil
            }
            channels[key] = nil
            return entry.ready
        }
        if let last, let follow = try? await last.value { await follow.stop() }
    }

    var channelCount: Int { channels.withLock { $0.count } }

    private func shard(for loop: any EventLoop) -> LoopShard {
        shards.withLock { shards in
            if let shard = shards[ObjectIdentifier(loop)] { return shard }
            let shard = LoopShard(loop: loop)
            shards[ObjectIdentifier(loop)] = shard
            return shard
        }
    }

    /// On the subscriber's connection: decode once, then one hand-off per event loop with followers.
    func dispatch(key: String, bytes: [UInt8]) {
        guard let message = ChannelWire.decode(bytes) else { return }
        GatewayMetrics.hubDecodes.increment()
        let event = HubEvent(message)
        for shard in shards.withLock({ Array($0.values) }) where shard.hasFollowers(key) {
            shard.post(event, key: key)
        }
    }
}

/// The followers on one event loop, and the events waiting to be delivered there. Events posted from
/// other threads are gathered and delivered in one loop task, so a burst costs one hop, and each
/// connection then flushes once for all of it.
final class LoopShard: Sendable {
    let loop: any EventLoop

    private struct State {
        var followers: [String: [ObjectIdentifier: ChannelFeed]] = [:]
        var pending: [(key: String, event: HubEvent)] = []
    }

    private let state = Mutex(State())

    init(loop: any EventLoop) {
        self.loop = loop
    }

    func add(_ feed: ChannelFeed, key: String) {
        state.withLock { $0.followers[key, default: [:]][ObjectIdentifier(feed)] = feed }
    }

    /// False when the feed was not here (removed already).
    func remove(_ feed: ChannelFeed, key: String) -> Bool {
        state.withLock { state in
            guard state.followers[key]?.removeValue(forKey: ObjectIdentifier(feed)) != nil else { return false }
            if state.followers[key]?.isEmpty == true { state.followers[key] = nil }
            return true
        }
    }

    var allFeeds: [ChannelFeed] {
        state.withLock { $0.followers.values.flatMap(\.values) }
    }

    func hasFollowers(_ key: String) -> Bool {
        state.withLock { $0.followers[key] != nil }
    }

    func post(_ event: HubEvent, key: String) {
        let first = state.withLock { state in
            state.pending.append((key, event))
            return state.pending.count == 1
        }
        guard first else { return }
        loop.execute { self.deliverPending() }
    }

    private func deliverPending() {
        GatewayMetrics.hubLoopBatches.increment()
        let batch = state.withLock { state in
            let pending = state.pending
            state.pending = []
            return pending.map { item in (item.event, state.followers[item.key].map { Array($0.values) } ?? []) }
        }
        for (event, followers) in batch where !followers.isEmpty {
            let frame = SharedFrame(event)
            for feed in followers { feed.receive(frame) }
        }
    }
}
