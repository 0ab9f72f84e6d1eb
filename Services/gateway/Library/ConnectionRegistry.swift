import Foundation
import Logging
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardRedis

/// The cluster-wide routing tables in Redis: which connections a user has and on which gateway, with
/// TTLs that heartbeats refresh. A gateway that dies stops refreshing and its entries expire; no
/// disconnect event is trusted.
struct ConnectionRegistry: Sendable {
    let redis: RedisClient
    let gatewayID: String
    /// How long an entry lives without a heartbeat.
    let ttlSeconds: Int
    let maxConnectionsPerUser: Int

    /// KEYS: the user's connection set (scored by expiry), the connection's hash.
    /// ARGV: connection id, gateway, TTL seconds, limit.
    static let registerScript = RedisScript(
        """
        local now = redis.call('TIME')
        local nowSeconds = tonumber(now[1])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', nowSeconds)
        if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
          return 0
        end
        redis.call('ZADD', KEYS[1], nowSeconds + tonumber(ARGV[3]), ARGV[1])
        redis.call('EXPIRE', KEYS[1], ARGV[3])
        redis.call('HSET', KEYS[2], 'gateway', ARGV[2], 'connectedAt', nowSeconds)
        redis.call('EXPIRE', KEYS[2], ARGV[3])
        return 1
        """)

    /// Records a new connection; false when the user already has the maximum.
    func register(userID: String, connectionID: String) async throws -> Bool {
        let reply = try await redis.run(
            Self.registerScript,
            keys: [
                RedisArgument(Keyspace.User.connections(userID)),
                RedisArgument(Keyspace.User.connection(userID, connectionID: connectionID)),
            ],
            arguments: [
                RedisArgument(connectionID), RedisArgument(gatewayID), RedisArgument(ttlSeconds),
                RedisArgument(maxConnectionsPerUser),
            ])
        return reply.integer == 1
    }

    /// KEYS: the pool's set (scored by expiry). ARGV: connection id, TTL seconds, limit.
    static let claimScript = RedisScript(
        """
        local now = tonumber(redis.call('TIME')[1])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
        if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
          return 0
        end
        redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
        redis.call('EXPIRE', KEYS[1], ARGV[2])
        return 1
        """)

    /// Counts a connection in a cluster-wide pool of one kind (every user's), or refreshes it; false
    /// when the pool is full. Entries expire `ttlSeconds` after their last claim.
    func claim(pool: String, connectionID: String, limit: Int) async throws -> Bool {
        let reply = try await redis.run(
            Self.claimScript, keys: [RedisArgument(Keyspace.connectionPool(pool))],
            arguments: [RedisArgument(connectionID), RedisArgument(ttlSeconds), RedisArgument(limit)])
        return reply.integer == 1
    }

    func release(pool: String, connectionID: String) async {
        _ = try? await redis.send("ZREM", RedisArgument(Keyspace.connectionPool(pool)), RedisArgument(connectionID))
    }

    func unregister(userID: String, connectionID: String) async {
        _ = try? await redis.pipeline([
            ["ZREM", RedisArgument(Keyspace.User.connections(userID)), RedisArgument(connectionID)],
            ["DEL", RedisArgument(Keyspace.User.connection(userID, connectionID: connectionID))],
        ])
    }

    /// Refreshes every local connection's entries and this gateway's line in the gateways table, in
    /// one pipelined round trip.
    func heartbeat(connections: [(userID: String, connectionID: String, channels: [String])]) async throws {
        let expiry = Int(Date().timeIntervalSince1970) + ttlSeconds
        var commands: [[RedisArgument]] = [
            [
                "HSET", RedisArgument(Keyspace.Cluster.gateways), RedisArgument(gatewayID),
                RedisArgument("\(connections.count) \(Int(Date().timeIntervalSince1970))"),
            ]
        ]
        for connection in connections {
            let key = Keyspace.User.connection(connection.userID, connectionID: connection.connectionID)
            commands.append([
                "ZADD", RedisArgument(Keyspace.User.connections(connection.userID)), RedisArgument(expiry),
                RedisArgument(connection.connectionID),
            ])
            commands.append([
                "EXPIRE", RedisArgument(Keyspace.User.connections(connection.userID)), RedisArgument(ttlSeconds),
            ])
            commands.append([
                "HSET", RedisArgument(key), "gateway", RedisArgument(gatewayID), "channels",
                RedisArgument(connection.channels.joined(separator: ",")),
            ])
            commands.append(["EXPIRE", RedisArgument(key), RedisArgument(ttlSeconds)])
        }
        _ = try await redis.pipeline(commands)
    }

    /// Connections per live gateway (one that sent a heartbeat within the TTL).
    func gateways() async throws -> [String: Int] {
        let reply = try await redis.send("HGETALL", RedisArgument(Keyspace.Cluster.gateways))
        let now = Int(Date().timeIntervalSince1970)
        var result: [String: Int] = [:]
        let fields = reply.array ?? []
        for index in stride(from: 0, to: fields.count - 1, by: 2) {
            guard let gateway = fields[index].string, let value = fields[index + 1].string else { continue }
            let parts = value.split(separator: " ")
            guard parts.count == 2, let count = Int(parts[0]), let seen = Int(parts[1]) else { continue }
            if now - seen <= ttlSeconds { result[gateway] = count }
        }
        return result
    }
}

/// Commands per second per user across all gateways: a token bucket in Redis (one script call per
/// command, Redis' clock, so gateways agree).
struct RateLimiter: Sendable {
    let redis: RedisClient
    /// Sustained commands per second.
    let rate: Double
    /// Commands allowed in a burst.
    let burst: Int

    static let script = RedisScript(
        """
        local now = redis.call('TIME')
        local nowMs = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
        local rate = tonumber(ARGV[1])
        local burst = tonumber(ARGV[2])
        local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
        local tokens = tonumber(state[1]) or burst
        local at = tonumber(state[2]) or nowMs
        tokens = math.min(burst, tokens + (nowMs - at) * rate / 1000)
        local allowed = 0
        if tokens >= 1 then
          tokens = tokens - 1
          allowed = 1
        end
        redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', nowMs)
        redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
        return allowed
        """)

    func allow(userID: String) async throws -> Bool {
        let reply = try await redis.run(
            Self.script, keys: [RedisArgument(Keyspace.User.commandRate(userID))],
            arguments: [RedisArgument(String(rate)), RedisArgument(burst)])
        return reply.integer == 1
    }
}

/// Refreshes the routing tables of this gateway's connections until shutdown.
struct RegistryHeartbeat: Service {
    let registry: ConnectionRegistry
    let sessions: SessionRegistry
    let logger: Logger

    func run() async throws {
        let interval = Duration.seconds(max(1, registry.ttlSeconds / 3))
        // Cancellation ends the loop too (a sibling service failed): the sleep below then returns at once.
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await registry.heartbeat(connections: sessions.snapshot())
            } catch {
                logger.warning("routing table heartbeat failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}
