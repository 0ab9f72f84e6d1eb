import Foundation
import ServiceLifecycle
import SwitchboardRedis
import SwitchboardStore
import SwitchboardTestSupport
import Testing

/// Credentials and TLS settings against real servers (issue 14 item 4).
@Suite(.serialized, .timeLimit(.minutes(2)))
struct TransportAuthIntegrationTests {
    /// A Redis of this test's own with `requirepass` (the suite's Redis has none): the password of the
    /// URL opens it, a wrong one is a clear error, none gets NOAUTH.
    @Test func aRedisWithAPasswordIsOpenedByTheURLsPasswordOnly() async throws {
        let port = ServiceProcesses.freePort()
        let folder = NSTemporaryDirectory() + "redis-auth-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let pid = try LocalServers.spawn(
            "/usr/bin/redis-server",
            [
                "--port", "\(port)", "--bind", "127.0.0.1", "--requirepass", "s3cret-pass", "--save", "",
                "--appendonly", "no",
                "--dir", folder,
            ])
        defer {
            kill(pid, SIGKILL)
            try? FileManager.default.removeItem(atPath: folder)
        }
        #expect(
            await eventually(timeout: .seconds(10)) {
                (try? await TestEnvironment.requireServer("redis", hostPort: "127.0.0.1:\(port)")) != nil
            })

        #expect(try await Self.setAndGet("redis://:s3cret-pass@127.0.0.1:\(port)").get() == "ok")
        #expect(try await Self.setAndGet("redis://default:s3cret-pass@127.0.0.1:\(port)/1").get() == "ok")
        guard case .failure(let wrong) = await Self.setAndGet("redis://:not-it@127.0.0.1:\(port)") else {
            Issue.record("a wrong password was accepted")
            return
        }
        #expect("\(wrong)".contains("AUTH refused") && !"\(wrong)".contains("not-it"), "\(wrong)")
        guard case .failure(let none) = await Self.setAndGet("redis://127.0.0.1:\(port)") else {
            Issue.record("no password was accepted")
            return
        }
        #expect("\(none)".contains("NOAUTH"), "\(none)")
    }

    /// A Redis of this test's own speaking TLS only, with a certificate from a CA made here: `rediss://`
    /// with that CA works, without it the certificate is refused, and
    /// clear text never reaches it.
    @Test func aRedisBehindTLSIsReachedByRedissWithItsCAOnly() async throws {
        let folder = NSTemporaryDirectory() + "redis-tls-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try await TestCertificates.make(in: folder)
        let port = ServiceProcesses.freePort()
        let pid = try LocalServers.spawn(
            "/usr/bin/redis-server",
            [
                "--port", "0", "--tls-port", "\(port)", "--bind", "127.0.0.1", "--tls-cert-file",
                "\(folder)/server.pem",
                "--tls-key-file", "\(folder)/server.key", "--tls-auth-clients", "no", "--save", "", "--appendonly",
                "no",
                "--dir", folder,
            ])
        defer { kill(pid, SIGKILL) }
        #expect(
            await eventually(timeout: .seconds(10)) {
                (try? await TestEnvironment.requireServer("redis", hostPort: "127.0.0.1:\(port)")) != nil
            })

        #expect(try await Self.setAndGet("rediss://localhost:\(port)?ca_file=\(folder)/ca.pem").get() == "ok")
        #expect(try await Self.setAndGet("rediss://127.0.0.1:\(port)/2?ca_file=\(folder)/ca.pem").get() == "ok")
        // The gateway's channel subscriptions go over the same TLS.
        let endpoint = try #require(RedisEndpoint(url: "rediss://localhost:\(port)?ca_file=\(folder)/ca.pem"))
        let subscriber = RedisSubscriber(endpoint: endpoint, logger: TestEnvironment.logger)
        let publisher = RedisClient(
            configuration: RedisClientConfiguration(endpoint: endpoint), logger: TestEnvironment.logger)
        let received = Locked<[String]>([])
        let group = ServiceGroup(services: [subscriber], logger: TestEnvironment.logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            _ = try await subscriber.subscribe("tls:{c}") { message in
                received.withLock { $0.append(String(decoding: message, as: UTF8.self)) }
            }
            #expect(try await publisher.send("PUBLISH", "tls:{c}", "over tls").integer == 1)
            #expect(await eventually { received.withLock { $0 } == ["over tls"] })
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        await publisher.close()
        guard case .failure(let untrusted) = await Self.setAndGet("rediss://localhost:\(port)") else {
            Issue.record("a certificate from an unknown CA was accepted")
            return
        }
        #expect("\(untrusted)".contains("CERTIFICATE_VERIFY_FAILED"), "\(untrusted)")
        guard case .failure = await Self.setAndGet("redis://127.0.0.1:\(port)") else {
            Issue.record("clear text reached a TLS-only Redis")
            return
        }
    }

    /// The suite's PostgreSQL has no TLS: `sslmode=prefer` falls back to clear text and works,
    /// `sslmode=require` never gets a connection from it, as libpq does (postgres-nio's pool keeps
    /// retrying a refused TLS handshake, so the check is that `SELECT 1` was not answered within 8 s).
    @Test func sslModePreferFallsBackAndRequireRefusesAServerWithoutTLS() async throws {
        try await TestEnvironment.requirePostgres()
        let separator = TestEnvironment.postgresURL.contains("?") ? "&" : "?"
        func answers(_ mode: String) async throws -> Bool {
            let configuration = try StoreConfiguration(url: TestEnvironment.postgresURL + "\(separator)sslmode=\(mode)")
            let store = HistoryStore(configuration: configuration, logger: TestEnvironment.logger)
            return await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    await store.run()
                    return false
                }
                let reachable = await store.isReachable(timeout: .seconds(8))
                group.cancelAll()
                return reachable
            }
        }
        #expect(try await answers("prefer"))
        #expect(try await !answers("require"))
    }

    /// SET then GET through a client of `url` that tries to connect once: the value, or why not.
    static func setAndGet(_ url: String) async -> Result<String, any Error> {
        var configuration = RedisClientConfiguration(endpoint: RedisEndpoint(url: url)!)
        configuration.connectAttempts = 1
        let client = RedisClient(configuration: configuration, logger: TestEnvironment.logger)
        defer { Task { await client.close() } }
        do {
            _ = try await client.send("SET", "transport-check", "ok")
            return .success(try await client.send("GET", "transport-check").string ?? "")
        } catch {
            return .failure(error)
        }
    }
}
