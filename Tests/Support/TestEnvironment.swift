import Foundation
import Logging
import NIOCore
import NIOPosix
import SwitchboardKafka
import SwitchboardRedis
import Synchronization

/// Where the real servers of the test run are. `make test` starts them and sets these variables; a
/// server that does not answer fails the test that needs it (it never skips).
public enum TestEnvironment {
    public static var kafkaBrokers: String {
        ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_KAFKA"] ?? "127.0.0.1:19092"
    }

    public static var redisURL: String {
        ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_REDIS"] ?? "redis://127.0.0.1:16390"
    }

    public static var postgresURL: String {
        ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_POSTGRES"]
            ?? "postgres://switchboard:switchboard@127.0.0.1:15440/switchboard"
    }

    public static var redisEndpoint: RedisEndpoint { RedisEndpoint(url: redisURL)! }

    /// The local Redis Cluster `make test` starts (deploy/scripts/redis-cluster.sh): every node, primaries
    /// and replicas, as seeds.
    public static var redisClusterURL: String {
        ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_REDIS_CLUSTER"]
            ?? "redis+cluster://" + (17001...17006).map { "127.0.0.1:\($0)" }.joined(separator: ",")
    }

    public static var redisClusterEndpoint: RedisEndpoint { RedisEndpoint(url: redisClusterURL)! }

    /// Fails (never skips) when the cluster's first node does not answer.
    public static func requireRedisCluster() async throws {
        let seed = redisClusterEndpoint
        try await requireServer("the Redis Cluster", hostPort: "\(seed.host):\(seed.port)")
    }

    public static var logger: Logger {
        var logger = Logger(label: "switchboard.tests")
        logger.logLevel =
            ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) }
            ?? .warning
        return logger
    }

    public struct ServerMissing: Error, CustomStringConvertible {
        public var description: String
    }

    /// Throws a clear error when the server at `hostPort` does not accept connections.
    public static func requireServer(_ name: String, hostPort: String) async throws {
        let parts = hostPort.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else {
            throw ServerMissing(description: "\(name): bad address \(hostPort)")
        }
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(2)).connect(host: String(parts[0]), port: port).get()
            try await channel.close()
        } catch {
            throw ServerMissing(
                description:
                    "\(name) is not running at \(hostPort) (run the tests with `make test`, which starts it): \(error)")
        }
    }

    public static func requireKafka() async throws {
        try await requireServer(
            "Kafka (Tansu)", hostPort: kafkaBrokers.split(separator: ",").first.map(String.init) ?? "")
    }

    public static func requireRedis() async throws {
        let endpoint = redisEndpoint
        try await requireServer("Redis", hostPort: "\(endpoint.host):\(endpoint.port)")
    }

    public static func requirePostgres() async throws {
        guard let url = URLComponents(string: postgresURL), let host = url.host else {
            throw ServerMissing(description: "PostgreSQL: bad URL \(postgresURL)")
        }
        try await requireServer("PostgreSQL", hostPort: "\(host):\(url.port ?? 5432)")
    }

    public static var kafkaClient: KafkaClientConfiguration {
        KafkaClientConfiguration(bootstrapServers: kafkaBrokers, clientID: "switchboard-tests")
    }

    /// A topic of its own for one test.
    public static func uniqueTopic(_ prefix: String = "test") -> String {
        "sb.\(prefix).\(UUID().uuidString.prefix(8).lowercased())"
    }
}

/// Polls `condition` until it holds or `timeout` passes.
public func eventually(
    timeout: Duration = .seconds(20), every interval: Duration = .milliseconds(50), _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}

/// A lock-protected value that closures can capture (a `Mutex` cannot be captured by escaping closures).
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    public init(_ value: Value) { mutex = Mutex(value) }

    public func withLock<T: Sendable>(_ body: (inout sending Value) throws -> sending T) rethrows -> T {
        try mutex.withLock(body)
    }
}
