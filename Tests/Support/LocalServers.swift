import Foundation
import SwitchboardRedis

/// The servers `make test` started (deploy/scripts/servers.sh), for tests that take one down the way an
/// outage does and start it again with the project's own script.
public enum LocalServers {
    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    /// The folder servers.sh keeps its pid files in (test.sh exports SB_STATE_DIR).
    static var stateDirectory: String {
        ProcessInfo.processInfo.environment["SB_STATE_DIR"] ?? repositoryRoot.appendingPathComponent(".state/test").path
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Starts a server of a test's own with nothing inherited (a server holding the test's stderr open
    /// would keep the test run from ending) and returns its pid; the test SIGKILLs it.
    public static func spawn(_ executable: String, _ arguments: [String]) throws -> pid_t {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: executable)
        server.arguments = arguments
        server.standardInput = FileHandle.nullDevice
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        return server.processIdentifier
    }

    /// SIGKILLs the test Redis: no shutdown, no final save (its append-only file is what survives).
    public static func killRedis() throws {
        try kill(pidFile: "\(stateDirectory)/redis/redis.pid")
    }

    /// SIGKILLs the server whose pid `pidFile` holds and returns once it is gone.
    static func kill(pidFile: String) throws {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { throw Failure(description: "no pid in \(pidFile)") }
        guard Foundation.kill(pid, SIGKILL) == 0 else {
            throw Failure(description: "kill -9 \(pid) failed: errno \(errno)")
        }
        while Foundation.kill(pid, 0) == 0 { usleep(20_000) }
    }

    /// Starts Redis again with servers.sh (which starts whatever of the three servers is not running, on
    /// the test ports) and waits until it answers.
    ///
    /// Answers, not just accepts connections: Redis accepts them while it still loads its append-only
    /// file and fails every command with LOADING meanwhile. With the channel events of ChaosTests in the
    /// file that takes a quarter of a second, and a client connecting then is closed by the gateway,
    /// whose admission (the routing table) needs Redis: DependencyOutageTests failed after ChaosTests.
    public static func restartRedis() async throws {
        try await startServers(until: "Redis") {
            let redis = RedisClient(
                configuration: .init(endpoint: TestEnvironment.redisEndpoint), logger: TestEnvironment.logger)
            do {
                try await redis.ping()
                await redis.close()
            } catch {
                await redis.close()
                throw error
            }
        }
    }

    /// Stops the test PostgreSQL the way servers.sh's `stop_postgres` does (`pg_ctl stop -m fast`, as the
    /// postgres OS user when run as root): its clients' connections are closed, its data kept.
    public static func stopPostgres() async throws {
        let pgBin = ProcessInfo.processInfo.environment["SB_PG_BIN"] ?? "/usr/lib/postgresql/15/bin"
        let data = "\(stateDirectory)/postgres/data"
        let stop = ["\(pgBin)/pg_ctl", "stop", "-D", data, "-m", "fast", "-w", "-t", "60"]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: getuid() == 0 ? "/usr/sbin/runuser" : stop[0])
        process.arguments = getuid() == 0 ? ["-u", "postgres", "--"] + stop : Array(stop.dropFirst())
        process.currentDirectoryURL = URL(fileURLWithPath: "/")
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // As for the start: the server going away is what counts, not the tool's reported exit.
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if (try? await TestEnvironment.requirePostgres()) == nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw Failure(description: "PostgreSQL still accepts connections 60 s after pg_ctl stop")
    }

    /// Starts PostgreSQL again with servers.sh and waits until it accepts connections.
    public static func startPostgres() async throws {
        try await startServers(until: "PostgreSQL") { try await TestEnvironment.requirePostgres() }
    }

    /// Runs `servers.sh start` and waits until `answers` succeeds.
    static func startServers(until name: String, answers: () async throws -> Void) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [repositoryRoot.appendingPathComponent("deploy/scripts/servers.sh").path, "start"]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // Waits for the server itself, not for the script's exit: with the stack's processes also
        // children of this test process, Foundation does not always report the script's end.
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if (try? await answers()) != nil { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw Failure(description: "\(name) did not come back within 60 s (servers.sh start)")
    }
}
