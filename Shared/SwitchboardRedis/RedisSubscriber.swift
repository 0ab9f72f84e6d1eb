import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// A handle for one local subscription; pass it back to `unsubscribe`.
public struct RedisSubscriptionToken: Sendable, Hashable {
    public let channel: String
    let id: Int
}

/// PUB/SUB on a connection of its own. Local subscriptions to one channel share one Redis SUBSCRIBE
/// (reference-counted); after a reconnect every channel is subscribed again. What was published while
/// the connection was down is lost here: owners number their messages and detect the gap (the
/// gateway's channel feeds close such a client with 4003 so it recovers by offset).
public final class RedisSubscriber: Service, Sendable {
    public typealias Handler = @Sendable (_ message: [UInt8]) -> Void

    private struct State {
        var connection: RedisConnection?
        var handlers: [String: [Int: Handler]] = [:]
        var nextID = 0
        var shuttingDown = false
        var connections = 0
        var resubscribed: [@Sendable () -> Void] = []
    }

    private let endpoint: RedisEndpoint
    private let group: any EventLoopGroup
    private let state = Mutex(State())
    private let logger: Logger
    private let backoff = RedisBackoff()

    public init(
        endpoint: RedisEndpoint, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger
    ) {
        self.endpoint = endpoint
        self.group = group
        self.logger = logger
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
                _ = try await connection().send(["SUBSCRIBE", RedisArgument(channel)])
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
        var backoff = 0
        var token: RedisSubscriptionToken?
        while token == nil, !Task.isCancelled, !Task.isShuttingDownGracefully {
            do {
                token = try await subscribe(channel, handler: handler)
            } catch {
                backoff = min(backoff + 1, 5)
                try? await Task.sleep(for: .milliseconds(100 << backoff))
            }
        }
        guard let token else { return }
        subscribed()
        try? await gracefulShutdown()
        await unsubscribe(token)
    }

    public func unsubscribe(_ token: RedisSubscriptionToken) async {
        let (wasLast, connection) = state.withLock { state -> (Bool, RedisConnection?) in
            state.handlers[token.channel]?.removeValue(forKey: token.id)
            guard state.handlers[token.channel]?.isEmpty ?? false else { return (false, nil) }
            state.handlers.removeValue(forKey: token.channel)
            return (true, state.connection)
        }
        if wasLast, let connection, connection.isActive {
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

    /// Keeps the connection up until graceful shutdown.
    public func run() async throws {
        // Graceful shutdown and cancellation (a sibling service failed) both end the wait on the
        // connection below, which no task cancellation would interrupt by itself.
        try await withTaskCancellationHandler {
            try await receive()
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
        let connection = state.withLock { state in
            state.shuttingDown = true
            return state.connection
        }
        connection?.channel.close(promise: nil)
    }

    private func dispatch(channel: [UInt8], message: [UInt8]) {
        let name = String(decoding: channel, as: UTF8.self)
        let handlers = state.withLock { $0.handlers[name].map { Array($0.values) } ?? [] }
        for handler in handlers { handler(message) }
    }

    private func connection() async throws -> RedisConnection {
        if let connection = state.withLock({ $0.connection }), connection.isActive { return connection }
        let connection = try await RedisConnection.connect(to: endpoint, group: group) { [weak self] channel, message in
            self?.dispatch(channel: channel, message: message)
        }
        let (winner, channels) = state.withLock { state -> (RedisConnection, [String]) in
            if let existing = state.connection, existing.isActive { return (existing, []) }
            // Stopped while connecting: the run loop sees the closed connection and ends.
            if state.shuttingDown { connection.channel.close(promise: nil) }
            state.connection = connection
            return (connection, Array(state.handlers.keys))
        }
        guard winner === connection else {
            await connection.close()
            return winner
        }
        if !channels.isEmpty {
            _ = try await connection.pipeline(channels.map { ["SUBSCRIBE", RedisArgument($0)] })
        }
        // Counted once subscribed again: a follower catching up after this sees what came before.
        let handlers = state.withLock { state in
            state.connections += 1
            return state.connections > 1 ? state.resubscribed : []
        }
        for handler in handlers { handler() }
        return connection
    }
}
