import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import SwitchboardContracts

/// A handle for one local subscription; pass it back to `unsubscribe`.
public struct RedisSubscriptionToken: Sendable, Hashable {
    public let channel: String
    let id: Int
}

/// PUB/SUB on a connection of its own. Local subscriptions to one channel share one Redis SUBSCRIBE
/// (reference-counted); after a reconnect every channel is subscribed again. What was published while
/// the connection was down is lost here: owners number their messages and detect the gap (the
/// gateway's channel feeds close such a client with 4003 so it recovers by offset).
///
/// In a cluster (`RedisEndpoint.isCluster`), a shard channel (`RedisHashSlot.isShardChannel`) is
/// followed with SSUBSCRIBE on the primary owning its slot, over one connection per shard, and moved
/// when its slot moves (a `-MOVED` answer, an `sunsubscribe` push, the node's connection lost); the
/// other channels keep SUBSCRIBE on one connection to any node. `run()` does the moving.
public final class RedisSubscriber: Service, Sendable {
    public typealias Handler = @Sendable (_ message: [UInt8]) -> Void

    private struct State {
        var connection: RedisConnection?
        var handlers: [String: [Int: Handler]] = [:]
        var nextID = 0
        var shuttingDown = false
        var connections = 0
        var resubscribed: [@Sendable () -> Void] = []
        /// Cluster: the connection to each primary that holds shard channels.
        var shardConnections: [RedisNodeAddress: RedisConnection] = [:]
        /// Cluster: where each shard channel is SSUBSCRIBEd.
        var placements: [String: RedisNodeAddress] = [:]
        /// Cluster: shard channels wanted but subscribed nowhere (their node failed or gave the slot away).
        var unplaced: Set<String> = []
    }

    private let endpoint: RedisEndpoint
    private let group: any EventLoopGroup
    private let state = Mutex(State())
    private let logger: Logger
    private let backoff = Backoff(initial: .milliseconds(50), maximum: RedisSubscriber.longestReconnectWait)
    static let longestReconnectWait = Duration.seconds(2)
    /// How long a publisher waits for a subscriber to be back after Redis came back: twice the longest
    /// wait between its reconnection attempts (`RedisClient.publishUntilHeard`'s default).
    public static let resubscribeWait = longestReconnectWait * 2
    /// Cluster only: the slot map.
    private let cluster: RedisClusterRouter?
    private let repairs: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation)

    public init(
        endpoint: RedisEndpoint, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger
    ) {
        self.endpoint = endpoint
        self.group = group
        self.logger = logger
        cluster =
            endpoint.isCluster
            ? RedisClusterRouter(
                configuration: RedisClientConfiguration(endpoint: endpoint), group: group, logger: logger) : nil
        repairs = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Calls `handler` with every message published to `channel` from the moment this returns.
    public func subscribe(_ channel: String, handler: @escaping Handler) async throws -> RedisSubscriptionToken {
        let (id, isFirst) = state.withLock { state -> (Int, Bool) in
            state.nextID += 1
            let isFirst = state.handlers[channel, default: [:]].isEmpty
            state.handlers[channel, default: [:]][state.nextID] = handler
            return (state.nextID, isFirst)
        }
        let token = RedisSubscriptionToken(channel: channel, id: id)
        if isFirst {
            do {
                if isSharded(channel) {
                    try await shardSubscribe(channel)
                } else {
                    _ = try await connection().send(["SUBSCRIBE", RedisArgument(channel)])
                }
            } catch {
                await unsubscribe(token)
                throw error
            }
        }
        return token
    }

    /// Subscribes (retrying with backoff while Redis may not be up yet), calls `subscribed` once it
    /// holds, then keeps the subscription until graceful shutdown. For a Service's `run()`.
    public func holdSubscription(
        _ channel: String, subscribed: @Sendable () -> Void = {}, handler: @escaping Handler
    ) async {
        var failures = 0
        var token: RedisSubscriptionToken?
        while token == nil, !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                token = try await subscribe(channel, handler: handler)
            } catch {
                failures += 1
                try? await Task.sleep(for: backoff.delay(attempt: failures))
            }
        }
        guard let token else { return }
        subscribed()
        try? await gracefulShutdown()
        await unsubscribe(token)
    }

    public func unsubscribe(_ token: RedisSubscriptionToken) async {
        let sharded = isSharded(token.channel)
        let (wasLast, connection) = state.withLock { state -> (Bool, RedisConnection?) in
            state.handlers[token.channel]?.removeValue(forKey: token.id)
            guard state.handlers[token.channel]?.isEmpty ?? false else { return (false, nil) }
            state.handlers.removeValue(forKey: token.channel)
            guard sharded else { return (true, state.connection) }
            state.unplaced.remove(token.channel)
            return (true, state.placements.removeValue(forKey: token.channel).flatMap { state.shardConnections[$0] })
        }
        guard wasLast, let connection, connection.isActive else { return }
        if sharded {
            // Its answer is an `sunsubscribe` push, which `received` ignores for a channel no one wants.
            connection.sendWithoutReply(["SUNSUBSCRIBE", RedisArgument(token.channel)])
        } else {
            _ = try? await connection.send(["UNSUBSCRIBE", RedisArgument(token.channel)])
        }
    }

    public var subscribedChannelCount: Int { state.withLock { $0.handlers.count } }

    /// Connections made so far: when it changes, messages published in between may have been missed,
    /// and a follower that numbers its messages reads them from where they are kept.
    public var connectionGeneration: Int { state.withLock { $0.connections } }

    /// Calls `handler` each time every channel was subscribed again after the connection dropped.
    public func onResubscribed(_ handler: @escaping @Sendable () -> Void) {
        state.withLock { $0.resubscribed.append(handler) }
    }

    /// Keeps the connection up until graceful shutdown; in a cluster, also moves shard channels whose
    /// slot moved.
    public func run() async throws {
        // Graceful shutdown and cancellation (a sibling service failed) both end the wait on the
        // connection below, which no task cancellation would interrupt by itself.
        try await withTaskCancellationHandler {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await self.receive() }
                if self.cluster != nil { group.addTask { await self.placeShardChannels() } }
            }
        } onCancel: {
            stop()
        }
    }

    private func receive() async throws {
        try await withGracefulShutdownHandler {
            var attempt = 0
            while !state.withLock({ $0.shuttingDown }) {
                do {
                    let connection = try await connection()
                    attempt = 0
                    try? await connection.channel.closeFuture.get()
                    state.withLock { if $0.connection === connection { $0.connection = nil } }
                    if state.withLock({ $0.shuttingDown }) { break }
                    logger.warning("redis subscriber connection lost; reconnecting")
                } catch {
                    attempt += 1
                    try await Task.sleep(for: backoff.delay(attempt: attempt))
                }
            }
        } onGracefulShutdown: {
            self.stop()
        }
    }

    private func stop() {
        let connections = state.withLock { state in
            state.shuttingDown = true
            return [state.connection].compactMap { $0 } + state.shardConnections.values
        }
        repairs.continuation.finish()
        for connection in connections { connection.channel.close(promise: nil) }
    }

    private func received(_ push: RedisPush, from node: RedisNodeAddress?) {
        switch push {
        case .message(let channel, let message):
            let name = String(decoding: channel, as: UTF8.self)
            let handlers = state.withLock { $0.handlers[name].map { Array($0.values) } ?? [] }
            for handler in handlers { handler(message) }
        case .shardUnsubscribed(let channel):
            // The node no longer serves the channel's slot (resharded, failed over): subscribe again where
            // the slot is now, unless this answers our own SUNSUBSCRIBE.
            let name = String(decoding: channel, as: UTF8.self)
            let moved = state.withLock { state -> Bool in
                guard let node, state.placements[name] == node else { return false }
                state.placements.removeValue(forKey: name)
                guard !state.shuttingDown, state.handlers[name] != nil else { return false }
                state.unplaced.insert(name)
                return true
            }
            if moved {
                logger.info(
                    "redis shard channel dropped by its node; moving it", metadata: ["redis.channel": "\(name)"])
                repairs.continuation.yield()
            }
        }
    }

    private func connection() async throws -> RedisConnection {
        if let connection = state.withLock({ $0.connection }), connection.isActive { return connection }
        var target = endpoint
        if let cluster { target = endpoint.node(try await cluster.anyPrimary()) }
        let connection = try await RedisConnection.connect(to: target, group: group) { [weak self] push in
            self?.received(push, from: nil)
        }
        let (winner, channels) = state.withLock { state -> (RedisConnection, [String]) in
            if let existing = state.connection, existing.isActive { return (existing, []) }
            // Stopped while connecting: the run loop sees the closed connection and ends.
            if state.shuttingDown { connection.channel.close(promise: nil) }
            state.connection = connection
            return (connection, state.handlers.keys.filter { !isSharded($0) })
        }
        guard winner === connection else {
            await connection.close()
            return winner
        }
        if !channels.isEmpty {
            _ = try await connection.pipeline(channels.map { ["SUBSCRIBE", RedisArgument($0)] })
        }
        countSubscribedAgain()
        return connection
    }

    /// Counted once subscribed again (a connection made again, shard channels moved): a follower catching
    /// up after this sees what came before.
    private func countSubscribedAgain() {
        let handlers = state.withLock { state in
            state.connections += 1
            return state.connections > 1 ? state.resubscribed : []
        }
        for handler in handlers { handler() }
    }

    // MARK: Sharded PUB/SUB (cluster)

    private func isSharded(_ channel: String) -> Bool { cluster != nil && RedisHashSlot.isShardChannel(channel) }

    /// SSUBSCRIBEs on the primary of the channel's slot, following `-MOVED` and waiting out a failover
    /// within the cluster retry window.
    private func shardSubscribe(_ channel: String) async throws {
        guard let cluster else { return }
        var retry = RedisClusterRouter.Retry(configuration: RedisClientConfiguration(endpoint: endpoint))
        let slot = RedisHashSlot.of(channel)
        while true {
            let node = try await cluster.primary(forSlot: slot)
            do {
                let connection = try await shardConnection(node)
                _ = try await connection.send(["SSUBSCRIBE", RedisArgument(channel)])
                guard try await confirmPrimary(node, of: channel, on: connection, cluster: cluster) else {
                    try retry.redirected(RedisError(.server, "MOVED: \(node) no longer serves \(channel) as primary"))
                    continue
                }
                let placed = state.withLock { state -> Bool in
                    // Lost meanwhile (the node failed): the loss handler did not see this channel yet.
                    guard connection.isActive, state.shardConnections[node] === connection else { return false }
                    if state.handlers[channel] != nil { state.placements[channel] = node }
                    state.unplaced.remove(channel)
                    return true
                }
                if placed { return }
                try await retry.wait(after: RedisError(.connection, "\(node) closed during SSUBSCRIBE"))
            } catch let error as RedisError {
                if RedisRedirect(error.reason) != nil {
                    try retry.redirected(error)
                } else if error.code == .connection || RedisClusterRouter.isTransient(error) {
                    try await retry.wait(after: error)
                } else {
                    throw error
                }
                try? await cluster.discover()
            }
        }
    }

    /// Whether the channel just SSUBSCRIBEd on `node` stays there; if not, it is SUNSUBSCRIBEd again.
    ///
    /// A node takes SSUBSCRIBE for a slot it serves as a replica too, and a primary just demoted by a
    /// failover takes it before its new primary counts it among its replicas: until then the shard's
    /// messages do not reach it, silently (half a second here, the end of a reply lost for a gateway
    /// whose slot map predated the failover). So a channel stays only on a node that answers for its
    /// slot as primary after the SSUBSCRIBE; a primary demoted later drops the channel with an
    /// `sunsubscribe` push, and `received` moves it.
    private func confirmPrimary(
        _ node: RedisNodeAddress, of channel: String, on connection: RedisConnection, cluster: RedisClusterRouter
    ) async throws -> Bool {
        let confirmed: Bool
        do {
            confirmed = try await cluster.isPrimary(node, for: channel)
        } catch {
            connection.sendWithoutReply(["SUNSUBSCRIBE", RedisArgument(channel)])
            throw error
        }
        // Its `sunsubscribe` answer finds the channel placed elsewhere or nowhere, and is ignored.
        if !confirmed { connection.sendWithoutReply(["SUNSUBSCRIBE", RedisArgument(channel)]) }
        return confirmed
    }

    /// The subscriber's connection to one primary, made on first use; its loss sends its channels to be
    /// placed again.
    private func shardConnection(_ node: RedisNodeAddress) async throws -> RedisConnection {
        if let connection = state.withLock({ $0.shardConnections[node] }), connection.isActive { return connection }
        let connection = try await RedisConnection.connect(to: endpoint.node(node), group: group) {
            [weak self] push in self?.received(push, from: node)
        }
        let winner = state.withLock { state -> RedisConnection in
            if let existing = state.shardConnections[node], existing.isActive { return existing }
            if state.shuttingDown { connection.channel.close(promise: nil) }
            state.shardConnections[node] = connection
            return connection
        }
        guard winner === connection else {
            await connection.close()
            return winner
        }
        connection.channel.closeFuture.whenComplete { [weak self] _ in self?.lost(connection, to: node) }
        return connection
    }

    private func lost(_ connection: RedisConnection, to node: RedisNodeAddress) {
        let orphans = state.withLock { state -> Int in
            guard state.shardConnections[node] === connection else { return 0 }
            state.shardConnections.removeValue(forKey: node)
            let orphans = state.placements.filter { $0.value == node }.map(\.key)
            for channel in orphans { state.placements.removeValue(forKey: channel) }
            guard !state.shuttingDown else { return 0 }
            state.unplaced.formUnion(orphans)
            return orphans.count
        }
        if orphans > 0 {
            logger.warning(
                "redis shard connection lost; moving its channels",
                metadata: ["redis.node": "\(node)", "redis.channels": "\(orphans)"])
            repairs.continuation.yield()
        }
    }

    /// Subscribes every unplaced shard channel where its slot now lives, until none is left or shutdown.
    private func placeShardChannels() async {
        var attempt = 0
        for await _ in repairs.stream {
            while true {
                let channels = state.withLock { $0.shuttingDown ? [] : Array($0.unplaced) }
                if channels.isEmpty { break }
                // The slot map this subscriber knows predates whatever moved the channels. (A replica
                // accepts SSUBSCRIBE for its primary's slots, so a stale map would not even be corrected
                // by a MOVED.)
                try? await cluster?.discover()
                var failed = false
                for channel in channels {
                    do { try await shardSubscribe(channel) } catch { failed = true }
                }
                if failed {
                    attempt += 1
                    try? await Task.sleep(for: backoff.delay(attempt: attempt))
                } else {
                    attempt = 0
                    // What their old node had while they moved was not delivered here.
                    countSubscribedAgain()
                }
            }
        }
    }
}
