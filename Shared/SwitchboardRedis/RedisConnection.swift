import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Where a Redis server is: `redis://host:port[/db]`, or `rediss://` for TLS.
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

    /// `redis[s]://[user[:password]@]host[:port][/database][?ca_file=/path/ca.pem]`; user and password
    /// are percent-decoded.
    public init?(url: String) {
        let usesTLS = url.hasPrefix("rediss://")
        guard usesTLS || url.hasPrefix("redis://") else { return nil }
        var rest = url.dropFirst(usesTLS ? "rediss://".count : "redis://".count)
        var caFile: String?
        if let question = rest.firstIndex(of: "?") {
            for item in rest[rest.index(after: question)...].split(separator: "&") {
                let pair = item.split(separator: "=", maxSplits: 1)
                guard pair.count == 2, pair[0] == "ca_file", usesTLS else { return nil }
                caFile = String(pair[1]).removingPercentEncoding
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
        let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
        guard let host = parts.first, !host.isEmpty else { return nil }
        let port = parts.count > 1 ? Int(parts[1]) : 6379
        guard let port else { return nil }
        self.init(host: String(host), port: port, database: database, username: username, password: password)
        self.usesTLS = usesTLS
        self.caFile = caFile
    }

    /// Never shows the password.
    public var description: String {
        let credentials = password != nil ? "\(username ?? ""):***@" : (username.map { "\($0)@" } ?? "")
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
        onPush: (@Sendable (_ channel: [UInt8], _ message: [UInt8]) -> Void)? = nil
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
        var futures: [EventLoopFuture<RESPValue>] = []
        futures.reserveCapacity(commands.count)
        for (index, command) in commands.enumerated() {
            futures.append(enqueue(command, flush: index == commands.count - 1))
        }
        var replies: [RESPValue] = []
        replies.reserveCapacity(futures.count)
        for future in futures { replies.append(try await future.get()) }
        return replies
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
