import Crypto
import Logging
import NIOCore
import NIOPosix
import Synchronization

public struct RedisClientConfiguration: Sendable {
    public var endpoint: RedisEndpoint
    /// Connections in the pool; commands are spread over them round-robin and pipelined on each.
    public var poolSize: Int = 2
    /// Wait between connection attempts.
    public var reconnectBackoff = RedisBackoff()
    /// Attempts to (re)connect before a command fails.
    public var connectAttempts: Int = 3

    public init(endpoint: RedisEndpoint) {
        self.endpoint = endpoint
    }
}

/// Exponential backoff with full jitter between reconnection attempts.
public struct RedisBackoff: Sendable {
    public var initial: Duration = .milliseconds(50)
    public var maximum: Duration = .seconds(2)

    public init() {}

    func delay(attempt: Int) -> Duration {
        let initialMicros = initial.components.seconds * 1_000_000 + initial.components.attoseconds / 1_000_000_000_000
        let maximumMicros = maximum.components.seconds * 1_000_000 + maximum.components.attoseconds / 1_000_000_000_000
        let ceiling = min(maximumMicros, initialMicros << min(Int64(attempt), 20))
        return .microseconds(Int64.random(in: 0...max(ceiling, 1)))
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

/// A small pool of pipelined connections that reconnects with backoff.
public final class RedisClient: Sendable {
    private struct Slot {
        var connection: RedisConnection?
        var failures = 0
    }

    private let configuration: RedisClientConfiguration
    private let group: any EventLoopGroup
    private let slots: Mutex<[Slot]>
    private let nextSlot = Atomic<Int>(0)
    private let logger: Logger

    public init(
        configuration: RedisClientConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) {
        self.configuration = configuration
        self.group = group
        self.slots = Mutex(Array(repeating: Slot(), count: max(1, configuration.poolSize)))
        var logger = logger
        logger[metadataKey: "redis.endpoint"] = "\(configuration.endpoint)"
        self.logger = logger
    }

    public var endpoint: RedisEndpoint { configuration.endpoint }

    /// Runs one command. An error reply throws `RedisError` with code `.server`.
    @discardableResult
    public func send(_ arguments: [RedisArgument]) async throws -> RESPValue {
        try await withConnection { try await $0.send(arguments) }
    }

    @discardableResult
    public func send(_ arguments: RedisArgument...) async throws -> RESPValue {
        try await send(arguments)
    }

    /// Sends all commands in one write on one connection and returns their replies in order.
    public func pipeline(_ commands: [[RedisArgument]]) async throws -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        return try await withConnection { try await $0.pipeline(commands) }
    }

    /// Runs a script by SHA, loading it first when the server does not know it.
    public func run(_ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument]) async throws -> RESPValue
    {
        let command: [RedisArgument] =
            ["EVALSHA", RedisArgument(script.sha1), RedisArgument(keys.count)] + keys + arguments
        do {
            return try await send(command)
        } catch let error as RedisError where error.code == .noScript {
            try await load(script)
            return try await send(command)
        }
    }

    /// Loads a script so later runs send only its SHA.
    public func load(_ script: RedisScript) async throws {
        let reply = try await send("SCRIPT", "LOAD", RedisArgument(script.source))
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
        let connections = slots.withLock { slots in
            defer { for index in slots.indices { slots[index].connection = nil } }
            return slots.compactMap(\.connection)
        }
        for connection in connections { await connection.close() }
    }

    private func withConnection<T>(_ body: (RedisConnection) async throws -> T) async throws -> T {
        let index = nextSlot.wrappingAdd(1, ordering: .relaxed).oldValue % configuration.poolSize
        let connection = try await connection(slot: index)
        return try await body(connection)
    }

    private func connection(slot index: Int) async throws -> RedisConnection {
        if let connection = slots.withLock({ $0[index].connection }), connection.isActive { return connection }
        var attempt = 0
        while true {
            do {
                let connection = try await RedisConnection.connect(to: configuration.endpoint, group: group)
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
