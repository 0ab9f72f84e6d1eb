import Foundation
import Synchronization

#if canImport(Glibc)
    @preconcurrency import Glibc
#endif

/// A child process (run.sh) started with posix_spawn and reaped by polling `waitpid`. Foundation's
/// Process proved unreliable here: next to signal handling its exit monitor missed run.sh's exit (a
/// zombie left, `isRunning` true for ever).
struct ScriptProcess: Sendable {
    let pid: pid_t

    struct SpawnError: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs `executable arguments…` with `environment`, stdin from /dev/null, stdout and stderr appended to `log`.
    static func spawn(_ executable: String, _ arguments: [String], environment: [String: String], log: URL) throws
        -> ScriptProcess
    {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log.path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([executable] + arguments).map { strdup($0) }
        let envp = environment.map { strdup("\($0.key)=\($0.value)") }
        defer { (argv + envp).forEach { free($0) } }
        var pid = pid_t()
        let code = posix_spawn(&pid, executable, &actions, nil, argv + [nil], envp + [nil])
        guard code == 0 else {
            throw SpawnError(description: "cannot start \(executable): \(String(cString: strerror(code)))")
        }
        return ScriptProcess(pid: pid)
    }

    /// The exit status once the process has ended (128 + the signal if a signal ended it), nil while it runs.
    func exitStatus() -> Int32? {
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// Polls until the process ends; returns its exit status.
    func waitForExit() async -> Int32 {
        while true {
            if let status = exitStatus() { return status }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    func terminate() {
        kill(pid, SIGTERM)
    }
}

/// SIGINT and SIGTERM, noted by a plain C handler (an atomic store is async-signal-safe) and read by
/// polling loops. Handlers, unlike ignored signals, reset to the default in children, so run.sh and
/// the services it starts still stop on their signals.
enum StopSignals {
    private static let received = Atomic<Int32>(0)

    static func install() {
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber) { number in StopSignals.received.store(number, ordering: .relaxed) }
        }
    }

    /// The signal that asked to stop (e.g. "SIGINT"), or nil.
    static var requested: String? {
        switch received.load(ordering: .relaxed) {
        case 0: nil
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case let other: "signal \(other)"
        }
    }
}
