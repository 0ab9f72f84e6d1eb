import Crypto
import Logging
import NIOCore
import NIOPosix
import Synchronization
import SwitchboardContracts

public struct RedisClientConfiguration: Sendable {
    public var endpoint: RedisEndpoint
    /// Connections in the pool; commands are spread over them round-robin and pipelined on each.
    public var poolSize: Int = 2
    /// Wait between connection attempts.
    public var reconnectBackoff = Backoff(initial: .milliseconds(50), maximum: .seconds(2))
    /// Attempts to (re)connect before a command fails.
    public var connectAttempts: Int = 3
    /// Cluster only: `MOVED`/`ASK` redirects followed for one command before it fails.
    public var maxRedirects: Int = 5
    /// Cluster only: how long a command keeps retrying while its slot has no reachable primary (a node
    /// failing over, `CLUSTERDOWN`, `TRYAGAIN`) before it fails.
    public var clusterRetryWindow: Duration = .seconds(10)

    public init(endpoint: RedisEndpoint) {
        self.endpoint = endpoint
    }
}

/// A Lua script run by its SHA1; loaded once per server, reloaded transparently after a SCRIPT FLUSH
/// or a failover.
public struct RedisScript: Sendable, Hashable {
    public let source: String
    public let sha1: String

    public init(_ source: String) {
        self.source = source
        self.sha1 = Insecure.SHA1.hash(data: Array(source.utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}

/// A small pool of pipelined connections that reconnects with backoff; in cluster mode
/// (`RedisEndpoint.isCluster`) such a pool per primary, each command routed by its key's slot.
public final class RedisClient: Sendable {
    private enum Mode {
        case single(RedisNodePool)
        case cluster(RedisClusterRouter)
    }

    private let configuration: RedisClientConfiguration
    private let mode: Mode

    public init(
        configuration: RedisClientConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "redis.endpoint"] = "\(configuration.endpoint)"
        if configuration.endpoint.isCluster {
            mode = .cluster(RedisClusterRouter(configuration: configuration, group: group, logger: logger))
        } else {
            mode = .single(
                RedisNodePool(
                    endpoint: configuration.endpoint, configuration: configuration, group: group, logger: logger))
        }
    }

    public var endpoint: RedisEndpoint { configuration.endpoint }

    /// The command that publishes to `channel`: SPUBLISH for a shard channel (one named with a hash tag,
    /// `RedisHashSlot.isShardChannel`) in a cluster, so only the shard owning its slot carries it;
    /// PUBLISH otherwise. A script that publishes takes it as an argument, and keeps the channel in the
    /// hash tag of its keys.
    public func publishCommand(for channel: String) -> RedisArgument {
        endpoint.isCluster && RedisHashSlot.isShardChannel(channel) ? "SPUBLISH" : "PUBLISH"
    }

    /// Publishes `messages` to `channel` in order, in one pipeline, and returns how many of them, counted
    /// from the first, a subscriber received. The count is the listener's for a channel on a single node
    /// and for a shard channel in a cluster; a cluster-wide PUBLISH counts one node's subscribers only.
    public func publish(_ messages: [[UInt8]], to channel: String) async throws -> Int {
        let command = publishCommand(for: channel)
        let name = RedisArgument(channel)
        let replies = try await pipeline(messages.map { [command, name, RedisArgument(bytes: $0)] })
        return replies.prefix { ($0.integer ?? 0) > 0 }.count
    }

    /// Publishes `messages` to `channel` until a listener has heard them all, resending from the first one
    /// nobody heard: a listener away for a moment (resubscribing after Redis came back) still hears them,
    /// in order. Gives up on the listener `listenerWait` after it last heard one (or after Redis was last
    /// down), and on a Redis that stays down at `deadline` (then the connection error is thrown). Returns
    /// how many were heard, counted from the first: all of them, or fewer when nobody listened.
    public func publishUntilHeard(
        _ messages: [[UInt8]], to channel: String, listenerWait: Duration = RedisSubscriber.resubscribeWait,
        deadline: ContinuousClock.Instant
    ) async throws -> Int {
        var unheard = messages[...]
        var listenerGone = ContinuousClock.now + listenerWait
        var attempt = 0
        while true {
            do {
                let heard = try await publish(Array(unheard), to: channel)
                unheard = unheard.dropFirst(heard)
                if unheard.isEmpty { return messages.count }
                if heard > 0 { listenerGone = .now + listenerWait }
                guard ContinuousClock.now < listenerGone else { return messages.count - unheard.count }
            } catch let error as RedisError where error.code == .connection && ContinuousClock.now < deadline {
                listenerGone = .now + listenerWait
            }
            try await Task.sleep(for: Self.resendBackoff.delay(attempt: attempt))
            attempt += 1
        }
    }

    static let resendBackoff = Backoff(initial: .milliseconds(50), maximum: .seconds(1))

    /// Runs one command. An error reply throws `RedisError` with code `.server`.
    @discardableResult
    public func send(_ arguments: [RedisArgument]) async throws -> RESPValue {
        switch mode {
        case .single(let pool): return try await pool.withConnection { try await $0.send(arguments) }
        case .cluster(let router): return try await router.send(arguments)
        }
    }

    @discardableResult
    public func send(_ arguments: RedisArgument...) async throws -> RESPValue {
        try await send(arguments)
    }

    /// Sends all commands in one write on one connection and returns their replies in order. In a
    /// cluster, one write per node, each node's commands in their order (the commands of one hash tag
    /// stay in order).
    public func pipeline(_ commands: [[RedisArgument]]) async throws -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        switch mode {
        case .single(let pool): return try await pool.withConnection { try await $0.pipeline(commands) }
        case .cluster(let router): return try await router.pipeline(commands)
        }
    }

    /// Runs a script by SHA, loading it first when the server (in a cluster: the key's node) does not
    /// know it.
    public func run(_ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument]) async throws -> RESPValue
    {
        let command: [RedisArgument] =
            ["EVALSHA", RedisArgument(script.sha1), RedisArgument(keys.count)] + keys + arguments
        switch mode {
        case .single:
            do {
                return try await send(command)
            } catch let error as RedisError where error.code == .noScript {
                try await load(script)
                return try await send(command)
            }
        case .cluster(let router):
            return try await router.send(command, script: script)
        }
    }

    /// Loads a script so later runs send only its SHA; in a cluster, on every primary.
    public func load(_ script: RedisScript) async throws {
        switch mode {
        case .single(let pool): try await pool.withConnection { try await Self.load(script, on: $0) }
        case .cluster(let router): try await router.loadEverywhere(script)
        }
    }

    static func load(_ script: RedisScript, on connection: RedisConnection) async throws {
        let reply = try await connection.send(["SCRIPT", "LOAD", RedisArgument(script.source)])
        guard reply.string == script.sha1 else {
            throw RedisError(
                .protocolViolation, "SCRIPT LOAD answered \(String(describing: reply.string)), expected \(script.sha1)")
        }
    }

    public func ping() async throws {
        let reply = try await send("PING")
        guard reply.string == "PONG" else { throw RedisError(.protocolViolation, "PING answered \(reply)") }
    }

    public func close() async {
        switch mode {
        case .single(let pool): await pool.close()
        case .cluster(let router): await router.close()
        }
    }
}

/// The pooled connections to one server (in a cluster, to one node).
final class RedisNodePool: Sendable {
    private struct Slot {
        var connection: RedisConnection?
        var failures = 0
    }

    let endpoint: RedisEndpoint
    private let configuration: RedisClientConfiguration
    private let group: any EventLoopGroup
    private let slots: Mutex<[Slot]>
    private let nextSlot = Atomic<Int>(0)
    private let logger: Logger

    init(
        endpoint: RedisEndpoint, configuration: RedisClientConfiguration, group: any EventLoopGroup, logger: Logger
    ) {
        self.endpoint = endpoint
        self.configuration = configuration
        self.group = group
        self.slots = Mutex(Array(repeating: Slot(), count: max(1, configuration.poolSize)))
        self.logger = logger
    }

    func withConnection<T>(_ body: (RedisConnection) async throws -> T) async throws -> T {
        try await body(try await connection())
    }

    func close() async {
        let connections = slots.withLock { slots in
            defer { for index in slots.indices { slots[index].connection = nil } }
            return slots.compactMap(\.connection)
        }
        for connection in connections { await connection.close() }
    }

    /// A connection of the pool, round-robin; throws `.connection` when the server cannot be reached
    /// (nothing was sent then, so a cluster may retry elsewhere).
    func connection() async throws -> RedisConnection {
        let index = nextSlot.wrappingAdd(1, ordering: .relaxed).oldValue % slots.withLock { $0.count }
        return try await connection(slot: index)
    }

    private func connection(slot index: Int) async throws -> RedisConnection {
        if let connection = slots.withLock({ $0[index].connection }), connection.isActive { return connection }
        var attempt = 0
        while true {
            do {
                let connection = try await RedisConnection.connect(to: endpoint, group: group)
                let loser = slots.withLock { slots -> RedisConnection? in
                    // Another task may have reconnected the slot meanwhile: keep one connection.
                    if let existing = slots[index].connection, existing.isActive { return connection }
                    slots[index].connection = connection
                    slots[index].failures = 0
                    return nil
                }
                if let loser {
                    await loser.close()
                    return try await self.connection(slot: index)
                }
                return connection
            } catch {
                attempt += 1
                let failures = slots.withLock { slots in
                    slots[index].failures += 1
                    return slots[index].failures
                }
                if attempt >= configuration.connectAttempts {
                    logger.warning(
                        "redis unreachable", metadata: ["error": "\(error)", "redis.failures": "\(failures)"])
                    throw error
                }
                try await Task.sleep(for: configuration.reconnectBackoff.delay(attempt: failures))
            }
        }
    }
}
