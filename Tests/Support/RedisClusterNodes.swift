import Foundation
import SwitchboardRedis

/// The test Redis Cluster's nodes seen one by one (plain clients, not the cluster client under test):
/// who is primary, which replica follows it, which primary holds a key, and a failover on demand.
public enum RedisClusterNodes {
    public static func onNode<T>(_ node: RedisNodeAddress, _ body: (RedisClient) async throws -> T) async throws -> T {
        let client = RedisClient(
            configuration: RedisClientConfiguration(endpoint: RedisEndpoint(host: node.host, port: node.port)),
            logger: TestEnvironment.logger)
        do {
            let result = try await body(client)
            await client.close()
            return result
        } catch {
            await client.close()
            throw error
        }
    }

    /// Every node's role, asked of each node itself: the primaries, and each replica's primary.
    public static func topology() async throws -> (
        primaries: [RedisNodeAddress], replicaOf: [RedisNodeAddress: RedisNodeAddress]
    ) {
        var primaries: [RedisNodeAddress] = []
        var replicaOf: [RedisNodeAddress: RedisNodeAddress] = [:]
        for node in TestEnvironment.redisClusterEndpoint.clusterSeeds {
            let role = try await onNode(node) { try await $0.send("ROLE").array ?? [] }
            if role.first?.string == "master" {
                primaries.append(node)
            } else if let host = role.dropFirst().first?.string, let port = role.dropFirst(2).first?.integer {
                replicaOf[node] = RedisNodeAddress(host: host, port: Int(port))
            }
        }
        return (primaries, replicaOf)
    }

    /// The primary holding `key`'s slot: the one that answers for it rather than with MOVED.
    public static func owner(of key: String, among primaries: [RedisNodeAddress]) async throws -> RedisNodeAddress {
        for primary in primaries {
            do {
                _ = try await onNode(primary) { try await $0.send("TYPE", RedisArgument(key)) }
                return primary
            } catch let error as RedisError where error.reason.hasPrefix("MOVED") {
                continue
            }
        }
        throw RedisError(.server, "no primary owns \(key)")
    }

    /// `CLUSTER FAILOVER` on a replica of `primary`, returned once it serves as primary. First waits for
    /// the cluster to be whole: a replica still syncing after an earlier failover refuses to take over.
    public static func failOver(_ primary: RedisNodeAddress) async throws -> RedisNodeAddress {
        try await waitUntilWhole()
        let replica = try await topology().replicaOf.first { $0.value == primary }?.key
        guard let replica else { throw RedisError(.server, "\(primary) has no replica") }
        try await onNode(replica) { promoted in
            try await promoted.send("CLUSTER", "FAILOVER")
            let deadline = ContinuousClock.now + .seconds(20)
            while try await promoted.send("ROLE").array?.first?.string != "master" {
                guard ContinuousClock.now < deadline else {
                    throw RedisError(.server, "\(replica) did not take over from \(primary)")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        return replica
    }
}

extension RedisClusterNodes {
    /// Waits until every node answers `cluster_state:ok` and every primary has a replica whose link to it
    /// is up: how a test that failed a primary over leaves the cluster to the suites after it (which
    /// look up who is primary, so the swapped roles do not matter to them, a replica still syncing does).
    public static func waitUntilWhole(timeout: Duration = .seconds(30)) async throws {
        let nodes = TestEnvironment.redisClusterEndpoint.clusterSeeds
        let whole = try await eventually(timeout: timeout, every: .milliseconds(200)) {
            var primaries: Set<RedisNodeAddress> = []
            var followed: Set<RedisNodeAddress> = []
            for node in nodes {
                let state = try? await onNode(node) { redis in
                    (try await redis.send("CLUSTER", "INFO").string ?? "", try await redis.send("ROLE").array ?? [])
                }
                guard let (info, role) = state, info.contains("cluster_state:ok") else { return false }
                if role.first?.string == "master" {
                    primaries.insert(node)
                } else if role.count >= 4, role[3].string == "connected", let host = role[1].string,
                    let port = role[2].integer
                {
                    followed.insert(RedisNodeAddress(host: host, port: Int(port)))
                } else {
                    return false
                }
            }
            return primaries.count == nodes.count / 2 && followed == primaries
        }
        if !whole {
            throw RedisError(.server, "the test Redis Cluster is not whole (every node ok, every primary followed)")
        }
    }

    /// Where redis-cluster.sh keeps the test cluster's nodes (`<port>/redis.conf`, `<port>.pid`).
    static var stateDirectory: String { LocalServers.stateDirectory + "/redis-cluster" }

    /// SIGKILLs the node's redis-server, as a crash would, and returns once it is gone.
    public static func kill(_ node: RedisNodeAddress) throws {
        try LocalServers.kill(pidFile: "\(stateDirectory)/\(node.port).pid")
    }

    /// Starts a killed node again from its redis-cluster.sh configuration (no data kept: it rejoins as an
    /// empty replica of whoever took its slots) and waits until the cluster is whole.
    public static func restart(_ node: RedisNodeAddress) async throws {
        // The configuration daemonizes: the server outlives this short-lived process.
        _ = try LocalServers.spawn("/usr/bin/env", ["redis-server", "\(stateDirectory)/\(node.port)/redis.conf"])
        try await waitUntilWhole(timeout: .seconds(60))
    }
}
