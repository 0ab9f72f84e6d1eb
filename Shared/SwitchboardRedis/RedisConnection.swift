import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Where a Redis server is: `redis://host:port[/db]`, or `rediss://` for TLS; or, for a Redis Cluster,
/// its seed nodes: `redis+cluster://host:port,host:port` (`rediss+cluster://` for TLS) or
/// `redis://host:port,host:port?cluster=true`.
public struct RedisEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var database: Int
    /// TLS (`rediss://`): the server's certificate is verified against the system's trust roots, or
    /// against `caFile` (`?ca_file=/path/ca.pem`) for a private CA, and must name `host`. There is no
    /// way to skip verification.
    public var usesTLS = false
    public var caFile: String?
    /// ACL user and password (`redis://user:password@host`, or `redis://:password@host` for
    /// `requirepass`): every connection authenticates with `AUTH` before its first command.
    public var username: String?
    public var password: String?
    /// The nodes asked for the cluster's slot map, `host`/`port` being the first; empty for a single
    /// server. Every node of the cluster is reached with this endpoint's TLS and credentials.
    public var clusterSeeds: [RedisNodeAddress] = []

    public init(
        host: String = "127.0.0.1", port: Int = 6379, database: Int = 0, username: String? = nil,
        password: String? = nil
    ) {
        self.host = host
        self.port = port
        self.database = database
        self.username = username
        self.password = password
    }

    /// Whether the client follows a Redis Cluster rather than one server.
    public var isCluster: Bool { !clusterSeeds.isEmpty }

    /// `redis[s][+cluster]://[user[:password]@]host[:port][,host[:port]...][/database][?ca_file=/path/ca.pem]
    /// [&cluster=true]`; user and password are percent-decoded. Several hosts only for a cluster, whose
    /// database is 0.
    public init?(url: String) {
        guard let separator = url.range(of: "://") else { return nil }
        let scheme = url[..<separator.lowerBound]
        guard ["redis", "rediss", "redis+cluster", "rediss+cluster"].contains(scheme) else { return nil }
        let usesTLS = scheme.hasPrefix("rediss")
        var cluster = scheme.hasSuffix("+cluster")
        var rest = url[separator.upperBound...]
        var caFile: String?
        if let question = rest.firstIndex(of: "?") {
            for item in rest[rest.index(after: question)...].split(separator: "&") {
                let pair = item.split(separator: "=", maxSplits: 1)
                guard pair.count == 2 else { return nil }
                switch pair[0] {
                case "ca_file" where usesTLS: caFile = String(pair[1]).removingPercentEncoding
                case "cluster" where pair[1] == "true" || pair[1] == "false": cluster = cluster || pair[1] == "true"
                default: return nil
                }
            }
            rest = rest[..<question]
        }
        var database = 0
        if let slash = rest.firstIndex(of: "/") {
            guard
                let parsed = Int(rest[rest.index(after: slash)...])
                    ?? (rest[rest.index(after: slash)...].isEmpty ? 0 : nil)
            else { return nil }
            database = parsed
            rest = rest[..<slash]
        }
        var username: String?
        var password: String?
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            if let colon = credentials.firstIndex(of: ":") {
                username = String(credentials[..<colon]).removingPercentEncoding
                password = String(credentials[credentials.index(after: colon)...]).removingPercentEncoding
            } else {
                username = String(credentials).removingPercentEncoding
            }
            if username?.isEmpty == true { username = nil }
            rest = rest[rest.index(after: at)...]
        }
        var nodes: [RedisNodeAddress] = []
        for node in rest.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = node.split(separator: ":", omittingEmptySubsequences: false)
            guard let host = parts.first, !host.isEmpty, parts.count <= 2 else { return nil }
            guard let port = parts.count > 1 ? Int(parts[1]) : 6379 else { return nil }
            nodes.append(RedisNodeAddress(host: String(host), port: port))
        }
        // A cluster has only database 0; one server has one address.
        guard let first = nodes.first, cluster ? database == 0 : nodes.count == 1 else { return nil }
        self.init(host: first.host, port: first.port, database: database, username: username, password: password)
        self.usesTLS = usesTLS
        self.caFile = caFile
        if cluster { clusterSeeds = nodes }
    }

    /// This endpoint's settings (TLS, credentials) for one node of its cluster.
    func node(_ address: RedisNodeAddress) -> RedisEndpoint {
        var node = self
        node.host = address.host
        node.port = address.port
        node.clusterSeeds = []
        return node
    }

    /// Never shows the password.
    public var description: String {
        let credentials = password != nil ? "\(username ?? ""):***@" : (username.map { "\($0)@" } ?? "")
        if isCluster {
            let nodes = clusterSeeds.map(\.description).joined(separator: ",")
            return "\(usesTLS ? "rediss" : "redis")+cluster://\(credentials)\(nodes)"
        }
        return "\(usesTLS ? "rediss" : "redis")://\(credentials)\(host):\(port)/\(database)"
    }

    /// One TLS context per trust setting, made on first use (loading the roots costs milliseconds, and
    /// connections are opened again on every reconnect).
    private static let tlsContexts = Mutex<[String: NIOSSLContext]>([:])

    func tlsContext() throws -> NIOSSLContext {
        try Self.tlsContexts.withLock { contexts in
            if let context = contexts[caFile ?? ""] { return context }
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let caFile { configuration.trustRoots = .file(caFile) }
            let context = try NIOSSLContext(configuration: configuration)
            contexts[caFile ?? ""] = context
            return context
        }
    }
}

/// One TCP connection to Redis. Commands written without awaiting each other are pipelined.
final class RedisConnection: Sendable {
    let channel: any Channel

    private init(channel: any Channel) {
        self.channel = channel
    }

    static func connect(
        to endpoint: RedisEndpoint, group: any EventLoopGroup,
        onPush: (@Sendable (RedisPush) -> Void)? = nil
    ) async throws -> RedisConnection {
        let channel: any Channel
        do {
            let tls = try endpoint.usesTLS ? endpoint.tlsContext() : nil
            // An address is checked against the certificate's IP entries; SNI carries names only.
            let serverName = endpoint.host.contains(where: { $0.isLetter }) ? endpoint.host : nil
            channel = try await ClientBootstrap(group: group)
                // IPPROTO_TCP: `.socketOption(.tcp_nodelay)` would be SOL_SOCKET/1, i.e. SO_DEBUG, which needs
                // CAP_NET_ADMIN (root on a host has it; a container, even as root, does not: EACCES).
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(2))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tls {
                            try channel.pipeline.syncOperations.addHandler(
                                NIOSSLClientHandler(context: tls, serverHostname: serverName))
                        }
                        try channel.pipeline.syncOperations.addHandler(RedisChannelHandler(onPush: onPush))
                    }
                }
                .connect(host: endpoint.host, port: endpoint.port).get()
        } catch {
            throw RedisError(.connection, "cannot connect to \(endpoint): \(error)")
        }
        let connection = RedisConnection(channel: channel)
        if let password = endpoint.password {
            let credentials =
                endpoint.username.map { [RedisArgument($0), RedisArgument(password)] } ?? [RedisArgument(password)]
            do {
                _ = try await connection.send(["AUTH"] + credentials)
            } catch let error as RedisError where error.code == .server {
                await connection.close()
                // A refused password is configuration, not an outage: say so plainly.
                throw RedisError(.server, "AUTH refused by \(endpoint): \(error.reason)")
            }
        }
        if endpoint.database != 0 {
            _ = try await connection.send(["SELECT", RedisArgument(endpoint.database)])
        }
        return connection
    }

    var isActive: Bool { channel.isActive }

    func send(_ arguments: [RedisArgument]) async throws -> RESPValue {
        try await enqueue(arguments, flush: true).get()
    }

    /// Writes every command before flushing once, then awaits the replies in order.
    func pipeline(_ commands: [[RedisArgument]]) async throws -> [RESPValue] {
        try await pipelineResults(commands).map { try $0.get() }
    }

    /// A pipeline whose every command has its own outcome: in a cluster, some commands of a batch may be
    /// redirected while the others ran.
    func pipelineResults(_ commands: [[RedisArgument]]) async -> [Result<RESPValue, any Error>] {
        var futures: [EventLoopFuture<RESPValue>] = []
        futures.reserveCapacity(commands.count)
        for (index, command) in commands.enumerated() {
            futures.append(enqueue(command, flush: index == commands.count - 1))
        }
        var replies: [Result<RESPValue, any Error>] = []
        replies.reserveCapacity(futures.count)
        for future in futures {
            do { replies.append(.success(try await future.get())) } catch { replies.append(.failure(error)) }
        }
        return replies
    }

    /// Writes a command whose answer comes as a push, not as a reply (SUNSUBSCRIBE).
    func sendWithoutReply(_ arguments: [RedisArgument]) {
        _ = channel.writeAndFlush(RedisRequest(encoded: HiredisProtocol.format(arguments), promise: nil))
    }

    private func enqueue(_ arguments: [RedisArgument], flush: Bool) -> EventLoopFuture<RESPValue> {
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        let request = RedisRequest(encoded: HiredisProtocol.format(arguments), promise: promise)
        // A write that never reached the handler (closed channel) fails the promise here; one that did
        // is failed by the handler. A promise completes once; the later completion is ignored.
        let written = flush ? channel.writeAndFlush(request) : channel.write(request)
        written.whenFailure { promise.fail(RedisError(.connection, "write failed: \($0)")) }
        return promise.futureResult
    }

    func close() async {
        try? await channel.close()
    }
}
