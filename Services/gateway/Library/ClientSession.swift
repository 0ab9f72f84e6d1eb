import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime

/// The gateway's state for one client connection (WebSocket or SSE): who it is, the channels it
/// follows, and where its frames go (a WebSocket on its event loop, or an SSE stream's bounded queue).
final class ClientSession: FrameSink, Sendable {
    let id: String
    let userID: String
    let outbound: any ClientOutbound
    /// The event loop its live events are delivered on (its connection's).
    let loop: any EventLoop
    private let feeds = FollowedFeeds()
    private let format: FrameFormat
    private let completes: @Sendable (ChannelWire.Message) -> Bool

    /// How channel events are rendered for this client.
    enum FrameFormat: Sendable {
        /// The stored frame with its offset and epoch: built once per event and shared by every such follower.
        case stamped
        /// Seed 000's SSE events (`ChatCentreDialect`): rendered once per event and shared, like `stamped`.
        case serverSentEvents
        /// Rendered per client (an SSE event, a front door's dialect); "" hides the event.
        case custom(@Sendable (ChannelWire.Message) -> String)
    }

    /// A session writing to a WebSocket (`socket`) on the event-loop core.
    convenience init(userID: String, socket: WebSocketOutbound, format: FrameFormat = .stamped) {
        self.init(userID: userID, outbound: socket, loop: socket.eventLoop, format: format)
    }

    /// A session whose frames an SSE or HTTP response task drains from a bounded queue.
    /// `onOverflow` runs when the client falls behind (see `GatewayRequestContext.cutOff`).
    /// `completes` says which delivered event ends the stream (a front door's run); none by default.
    convenience init(
        userID: String, outboundLimitBytes: Int, loop: any EventLoop, onOverflow: @escaping @Sendable () -> Void = {},
        formatter: @escaping @Sendable (ChannelWire.Message) -> String = \.stampedJSON,
        completes: @escaping @Sendable (ChannelWire.Message) -> Bool = { _ in false }
    ) {
        self.init(
            userID: userID, outboundLimitBytes: outboundLimitBytes, loop: loop, onOverflow: onOverflow,
            format: .custom(formatter),
            completes: completes)
    }

    convenience init(
        userID: String, outboundLimitBytes: Int, loop: any EventLoop, onOverflow: @escaping @Sendable () -> Void = {},
        format: FrameFormat, completes: @escaping @Sendable (ChannelWire.Message) -> Bool = { _ in false }
    ) {
        self.init(
            userID: userID, outbound: OutboundQueue(limitBytes: outboundLimitBytes, onOverflow: onOverflow), loop: loop,
            format: format, completes: completes)
    }

    private init(
        userID: String, outbound: any ClientOutbound, loop: any EventLoop, format: FrameFormat,
        completes: @escaping @Sendable (ChannelWire.Message) -> Bool = { _ in false }
    ) {
        self.id = UUID().uuidString.lowercased()
        self.userID = userID
        self.outbound = outbound
        self.loop = loop
        self.format = format
        self.completes = completes
    }

    /// The next frame an SSE or HTTP response task writes; nil once finished (always, for a WebSocket session).
    func next() async -> OutboundItem? {
        await (outbound as? OutboundQueue)?.next()
    }

    func send(_ frame: ServerFrame) {
        guard let json = try? FrameEncoding.json(frame) else { return }
        outbound.enqueue(json)
    }

    // MARK: FrameSink

    func deliver(_ message: ChannelWire.Message) -> Bool {
        let text: String
        switch format {
        case .stamped: text = message.stampedJSON
        case .serverSentEvents: text = ChatCentreDialect.serverSentEvent(message)
        case .custom(let render): text = render(message)
        }
        return enqueue(text, for: message)
    }

    private func enqueue(_ text: String, for message: ChannelWire.Message) -> Bool {
        var accepted = true
        // A formatter that shows only some frames (the compatible front doors) returns "" for the rest.
        if !text.isEmpty {
            accepted = outbound.enqueue(text, ephemeral: message.isEphemeral, createdAt: message.createdAt)
            if accepted { GatewayMetrics.delivered.increment() }
        }
        if completes(message) { complete() }
        return accepted
    }

    /// A live event on this session's loop: a WebSocket follower gets the shared frame bytes as they are.
    func deliver(shared frame: SharedFrame) -> Bool {
        if case .serverSentEvents = format { return enqueue(frame.event.serverSentEvent, for: frame.event.message) }
        guard case .stamped = format, let socket = outbound as? WebSocketOutbound, socket.eventLoop.inEventLoop else {
            return deliver(frame.event.message)
        }
        var accepted = false
        socket.onLoop { connection in
            let payload = OutboundPayload(
                bytes: frame.event.stamped,
                deflated: connection.sharesDeflatedFrames ? frame.deflated(allocator: socket.allocator) : nil)
            accepted = connection.enqueue(
                payload, ephemeral: frame.event.message.isEphemeral, createdAt: frame.event.message.createdAt)
        }
        if accepted { GatewayMetrics.delivered.increment() }
        return accepted
    }

    /// Set once the stream has shown what it was opened for (a front door's run ended).
    private let completed = Atomic<Bool>(false)
    var isComplete: Bool { completed.load(ordering: .acquiring) }

    /// Ends the stream after what is queued: the writer sees a close and, the stream being complete,
    /// writes its normal ending instead of an error.
    func complete() {
        completed.store(true, ordering: .releasing)
        outbound.close(.shutdown, reason: "complete")
    }

    func insufficientState(_ reason: String) {
        outbound.close(.insufficientState, reason: "insufficient state: resubscribe with your last offset")
    }

    // MARK: Channels

    var channels: [String] { feeds.channels.map(\.description) }

    /// The conversations this connection follows.
    var conversations: [String] { feeds.channels.filter { $0.kind == .conversation }.map(\.id) }

    /// Conversations this connection was already allowed into.
    private let authorizedConversations = Mutex<Set<String>>([])

    func isAuthorized(for conversationID: String) -> Bool {
        authorizedConversations.withLock { $0.contains(conversationID) }
    }

    func recordAuthorized(_ conversationID: String) {
        _ = authorizedConversations.withLock { $0.insert(conversationID) }
    }

    /// Consecutive commands answered with an error; too many and the client is misbehaving.
    private let consecutiveErrors = Atomic<Int>(0)

    func recordAnswer(isError: Bool) -> Int {
        if isError { return consecutiveErrors.add(1, ordering: .relaxed).newValue }
        consecutiveErrors.store(0, ordering: .relaxed)
        return 0
    }

    private let rateExcess = Mutex(SustainedExcess())

    /// Records a command refused for the rate; true once the excess is sustained (close with 4504).
    func recordRateRefusal(settings: GatewaySettings, now: ContinuousClock.Instant = .now) -> Bool {
        rateExcess.withLock {
            $0.recordRefusal(at: now, window: settings.rateExcessWindow, minimumRefusals: settings.rateExcessRefusals)
        }
    }

    func isFollowing(_ channel: SwitchboardContracts.Channel) -> Bool {
        feeds.contains(channel)
    }

    /// Follows a channel from `since` (recovering what was missed), or from now. Following a channel
    /// again replaces the previous feed, so a client can re-sync without reconnecting.
    /// `snapshot` renders a frame shown right after `announce`'s answer and before any recovered event
    /// (ROLE_STATUS_SNAPSHOT); it is read once the live subscription is in place.
    func follow(
        _ channel: SwitchboardContracts.Channel, since: StreamPosition?, hub: DeliveryHub, history: ChannelHistory,
        snapshot: (() async throws -> String)? = nil,
        announce: (_ recovered: Bool, _ position: StreamPosition?) -> Void = { _, _ in }
    ) async throws -> ChannelFeed.Opened {
        if channel.kind == .conversation, !feeds.contains(channel),
            conversations.count >= GatewayLimits.conversationsPerConnection
        {
            throw CommandError(
                .limitExceeded,
                "a connection follows at most \(GatewayLimits.conversationsPerConnection) conversations; unsubscribe from one first"
            )
        }
        var snapshotText: String?
        let opened = try await ChannelFeed.open(
            channel, since: since, hub: hub, history: history, sink: self, loop: loop,
            whileSubscribed: { if let snapshot { snapshotText = try await snapshot() } },
            announce: { recovered, position in
                announce(recovered, position)
                if let snapshotText { outbound.enqueue(snapshotText) }
            })
        await feeds.replace(with: opened.feed)
        return opened
    }

    func unfollow(_ channel: SwitchboardContracts.Channel) async {
        await feeds.remove(channel)
    }

    func unfollowAll() async {
        await feeds.removeAll()
    }
}

/// The gateway's live sessions, so shutdown can tell each client to reconnect elsewhere.
final class SessionRegistry: Service, Sendable {
    private let sessions = Mutex<[String: ClientSession]>([:])
    private let shutdownWindow: Duration
    private let logger: Logger

    init(shutdownWindow: Duration, logger: Logger) {
        self.shutdownWindow = shutdownWindow
        self.logger = logger
    }

    var count: Int { sessions.withLock { $0.count } }

    func snapshot() -> [(userID: String, connectionID: String, channels: [String])] {
        sessions.withLock { $0.values.map { ($0.userID, $0.id, $0.channels) } }
    }

    /// Once shutdown begins no connection is added (nor accepted: see `isDraining`), so none escapes
    /// the batches of shutdown codes and then gets cut off without one.
    private let draining = Atomic<Bool>(false)

    var isDraining: Bool { draining.load(ordering: .acquiring) }

    /// Adds a connection; false when the gateway is shutting down (the caller then refuses it).
    func add(_ session: ClientSession) -> Bool {
        let added = sessions.withLock { sessions -> Bool in
            guard !draining.load(ordering: .acquiring) else { return false }
            sessions[session.id] = session
            return true
        }
        if added { GatewayMetrics.connections.increment() }
        return added
    }

    func remove(_ session: ClientSession) {
        guard sessions.withLock({ $0.removeValue(forKey: session.id) }) != nil else { return }
        GatewayMetrics.connections.decrement()
        // Many connections went away: a second later, hand their freed memory back to the kernel.
        // glibc otherwise keeps it in its arenas, and the RSS would stay at the busiest moment's.
        if removedSinceTrim.add(1, ordering: .relaxed).newValue == Self.trimAfterRemovals {
            MultiThreadedEventLoopGroup.singleton.any().scheduleTask(in: .seconds(1)) { [self] in
                removedSinceTrim.store(0, ordering: .relaxed)
                NIOThreadPool.singleton.submit { _ in _ = glibcMallocTrim(0) }
            }
        }
    }

    private let removedSinceTrim = Atomic<Int>(0)
    static let trimAfterRemovals = 500

    /// Waits for shutdown, then sends every client the shutdown code in batches spread over the window,
    /// so they reconnect to other instances without a thundering herd.
    func run() async throws {
        try? await gracefulShutdown()
        let all = sessions.withLock { sessions in
            draining.store(true, ordering: .releasing)
            return Array(sessions.values)
        }
        guard !all.isEmpty else { return }
        let batches = max(1, min(all.count / 100, 30))
        let pause = shutdownWindow / batches
        logger.info(
            "closing client connections", metadata: ["ws.connections": "\(all.count)", "batches": "\(batches)"])
        for (index, session) in all.enumerated() {
            session.outbound.close(.shutdown, reason: "server shutting down; reconnect")
            let batchSize = (all.count + batches - 1) / batches
            if (index + 1) % batchSize == 0 && index + 1 < all.count { try? await Task.sleep(for: pause) }
        }
        // Give the writers a moment to send the close frames.
        _ = await eventuallyEmpty(within: .seconds(5))
    }

    private func eventuallyEmpty(within timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if count == 0 { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return count == 0
    }
}

/// glibc's `malloc_trim` (a GNU extension the Glibc module does not export): returns the free memory
/// at the top of the heap and in every arena to the kernel.
@_silgen_name("malloc_trim")
private func glibcMallocTrim(_ pad: Int) -> Int32

/// Commands refused for being over the request rate: a burst is answered RATE_LIMITED; refusals that
/// keep coming (each within `quiet` of the last, whatever was accepted between) for `window`, at
/// least `minimumRefusals` of them, are a sustained excess.
struct SustainedExcess: Sendable, Equatable {
    private var episodeStart: ContinuousClock.Instant?
    private var lastRefusal: ContinuousClock.Instant?
    private var refusals = 0

    mutating func recordRefusal(
        at now: ContinuousClock.Instant, window: Duration, minimumRefusals: Int, quiet: Duration = .seconds(1)
    ) -> Bool {
        if let lastRefusal, now - lastRefusal < quiet {
            refusals += 1
        } else {
            episodeStart = now
            refusals = 1
        }
        lastRefusal = now
        return refusals >= minimumRefusals && now - (episodeStart ?? now) >= window
    }
}
