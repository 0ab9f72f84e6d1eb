import Foundation
import Testing

/// A Tansu of one test's own, to restart without disturbing the other tests' broker. Tansu keeps its
/// log in memory (this build has no other storage engine): it comes back without topics, groups,
/// offsets or producer ids.
public final class TestBroker: Sendable {
    public let address: String
    private let pid: Locked<pid_t>
    private let binary: String

    public init() async throws {
        binary = try #require(ProcessInfo.processInfo.environment["SB_TANSU_BIN"], "SB_TANSU_BIN is set by make test")
        address = "127.0.0.1:\(ServiceProcesses.freePort())"
        pid = Locked(0)
        pid.withLock { $0 = (try? Self.spawn(binary, address)) ?? 0 }
        try await waitUntilItAnswers()
    }

    private static func spawn(_ binary: String, _ address: String) throws -> pid_t {
        try LocalServers.spawn(
            binary,
            [
                "broker", "--cluster-id", "test-broker", "--listener-url", "tcp://\(address)",
                "--advertised-listener-url", "tcp://\(address)", "--storage-engine", "memory://tansu/",
            ])
    }

    private func waitUntilItAnswers() async throws {
        let address = address
        let up = await eventually(timeout: .seconds(10)) {
            (try? await TestEnvironment.requireServer("kafka", hostPort: address)) != nil
        }
        try #require(up, "the test's broker at \(address) did not answer")
    }

    /// SIGKILL, then started again on the same address.
    public func restart() async throws {
        let old = pid.withLock { $0 }
        kill(old, SIGKILL)
        while kill(old, 0) == 0 { try await Task.sleep(for: .milliseconds(20)) }
        let binary = binary
        let address = address
        pid.withLock { $0 = (try? Self.spawn(binary, address)) ?? 0 }
        try await waitUntilItAnswers()
    }

    public func stop() {
        kill(pid.withLock { $0 }, SIGKILL)
    }
}
