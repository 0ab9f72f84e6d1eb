import Foundation

/// The servers `make test` started (deploy/scripts/servers.sh), for tests that take one down the way an
/// outage does and start it again with the project's own script.
public enum LocalServers {
    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// The folder servers.sh keeps its pid files in (test.sh exports SB_STATE_DIR).
    static var stateDirectory: String {
        ProcessInfo.processInfo.environment["SB_STATE_DIR"] ?? repositoryRoot.appendingPathComponent(".state/test").path
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// SIGKILLs the test Redis: no shutdown, no final save (its append-only file is what survives).
    public static func killRedis() throws {
        let pidFile = "\(stateDirectory)/redis/redis.pid"
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { throw Failure(description: "no Redis pid in \(pidFile)") }
        guard kill(pid, SIGKILL) == 0 else { throw Failure(description: "kill -9 \(pid) failed: errno \(errno)") }
        while kill(pid, 0) == 0 { usleep(20_000) }
    }

    /// Starts whatever of the three servers is not running (servers.sh start is idempotent), on the
    /// test ports, and waits until they answer.
    public static func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [repositoryRoot.appendingPathComponent("deploy/scripts/servers.sh").path, "start"]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        // A termination handler, not waitUntilExit: that one spins a run loop this test thread does not
        // serve, and never returns.
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            process.terminationHandler = { _ in continuation.resume() }
            do { try process.run() } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
        guard process.terminationStatus == 0 else {
            throw Failure(description: "servers.sh start exited \(process.terminationStatus)")
        }
    }
}
