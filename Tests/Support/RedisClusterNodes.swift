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
    /// Waits until every node answers `cluster_state:ok`, every replica's link to its primary is up, and
    /// every node's `CLUSTER NODES` tells the same roles, each primary followed by a replica: how a test
    /// that failed a primary over leaves the cluster to the suites after it. They look up who is primary,
    /// so swapped roles do not matter to them; a replica still syncing, or one its primary does not count
    /// yet (its `CLUSTER FAILOVER` is then ignored), does.
    public static func waitUntilWhole(timeout: Duration = .seconds(30)) async throws {
        let nodes = TestEnvironment.redisClusterEndpoint.clusterSeeds
        let whole = try await eventually(timeout: timeout, every: .milliseconds(200)) {
            var views: Set<[String]> = []
            for node in nodes {
                let state = try? await onNode(node) { redis in
                    (
                        try await redis.send("CLUSTER", "INFO").string ?? "",
                        try await redis.send("ROLE").array ?? [],
                        try await redis.send("CLUSTER", "NODES").string ?? ""
                    )
                }
                guard let (info, role, table) = state, info.contains("cluster_state:ok") else { return false }
                guard role.first?.string == "master" || (role.count >= 4 && role[3].string == "connected") else {
                    return false
                }
                views.insert(roles(in: table))
            }
            guard views.count == 1, let view = views.first, view.count == nodes.count else { return false }
            let primaries = view.filter { $0.hasSuffix(" master -") }.map { $0.prefix { $0 != " " } }
            let followed = Set(view.compactMap { $0.contains(" slave ") ? $0.split(separator: " ").last : nil })
            return primaries.count == nodes.count / 2 && Set(primaries) == followed
        }
        if !whole {
            throw RedisError(.server, "the test Redis Cluster is not whole (every node ok, every primary followed)")
        }
    }

    /// `CLUSTER NODES` reduced to `<id> master -` or `<id> slave <primary id>` per healthy node, sorted;
    /// a node flagged failing or still being met is left out.
    static func roles(in table: String) -> [String] {
        table.split(whereSeparator: \.isNewline).compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count >= 4 else { return nil }
            let flags = Set(fields[2].split(separator: ","))
            guard flags.isDisjoint(with: ["fail", "fail?", "handshake", "noaddr"]) else { return nil }
            let role = flags.contains("master") ? "master" : "slave"
            return "\(fields[0]) \(role) \(fields[3])"
        }.sorted()
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
