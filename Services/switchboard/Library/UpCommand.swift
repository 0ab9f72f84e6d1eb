import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import SwitchboardRuntime

/// The local stack as deploy/scripts/run.sh runs it: where its script, state and ports are.
public struct LocalStack: Sendable {
    public var repository: URL
    public var stateDirectory: URL
    public var endpoints: ServiceEndpoints
    /// Kafka, Redis and PostgreSQL ports (servers.sh's SB_*_PORT settings).
    public var servers: [(name: String, port: Int)]

    public var script: URL { repository.appendingPathComponent("deploy/scripts/run.sh") }
    public var logDirectory: URL { stateDirectory.appendingPathComponent("logs") }

    public init(repository: URL, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.repository = repository
        let state = environment["SB_STATE_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        stateDirectory = state.map { URL(fileURLWithPath: $0) } ?? repository.appendingPathComponent(".state/stack")
        endpoints = try ServiceEndpoints.resolve(host: nil, overrides: [], environment: environment)
        func port(_ variable: String, _ defaultPort: Int) throws -> Int {
            guard let raw = environment[variable], !raw.isEmpty else { return defaultPort }
            guard let port = Int(raw), (1...65_535).contains(port) else {
                throw ValidationError("\(variable) is not a port: \(raw)")
            }
            return port
        }
        servers = [
            ("kafka", try port("SB_KAFKA_PORT", 9092)), ("redis", try port("SB_REDIS_PORT", 6390)),
            ("postgres", try port("SB_POSTGRES_PORT", 5440)),
        ]
    }

    /// The repository: the flag, else the current folder or one above it, else one above this executable.
    public static func findRepository(_ flag: String?) throws -> URL {
        let marker = "deploy/scripts/run.sh"
        if let flag {
            let url = URL(fileURLWithPath: flag)
            guard FileManager.default.fileExists(atPath: url.appendingPathComponent(marker).path) else {
                throw ValidationError("\(flag) has no \(marker)")
            }
            return url
        }
        for start in [FileManager.default.currentDirectoryPath, CommandLine.arguments[0]] {
            var url = URL(fileURLWithPath: start).standardizedFileURL
            while url.path != "/" {
                if FileManager.default.fileExists(atPath: url.appendingPathComponent(marker).path) { return url }
                url.deleteLastPathComponent()
            }
        }
        throw ValidationError("cannot find \(marker): run from the Switchboard repository or pass --repo")
    }

    /// The JWT secret the services were given: run.sh's rule (the environment's, else the state folder's).
    public func jwtSecret(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let secret = environment["SWITCHBOARD_JWT_SECRET"], !secret.isEmpty { return secret }
        let file = stateDirectory.appendingPathComponent("jwt-secret").path
        return (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Starts `run.sh <mode>` with its output appended to `log`.
    func runScript(_ mode: String, log: URL, environment: [String: String]) throws -> ScriptProcess {
        try ScriptProcess.spawn("/bin/bash", [script.path, mode], environment: environment, log: log)
    }
}

/// The state `up` reports once the stack is ready.
public struct StackState: Sendable, Codable, Equatable {
    public var ready: Bool
    public var gateway: String
    public var console: String
    public var token: String
    public var user: String
    public var stateDirectory: String
    public var logs: String
    public var detached: Bool
    public var services: [ServiceHealth]
}

struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up", abstract: "Start the local stack (deploy/scripts/run.sh) and show it coming up.",
        discussion: """
            Starts Kafka, Redis, PostgreSQL and the six services, prints the gateway and console URLs and a \
            token, then stays until Ctrl-C / SIGTERM and stops everything (or returns at once with --detach; \
            stop it later with deploy/scripts/run.sh down). run.sh's SB_* variables apply (ports, state \
            folder, SB_BIN_DIR).
            """)

    @Option(help: "The Switchboard repository (default: the current folder or the one holding this binary).") var repo:
        String?
    @Option(help: "Use these service binaries instead of a release build (sets SB_BIN_DIR).") var binDir: String?
    @Option(help: "Seconds to wait for every service to be ready (sets SB_READY_TIMEOUT; default 120).")
    var readyTimeout: Int?
    @Option(help: "The user the printed token names.") var user = "demo"
    @Flag(help: "Return once the stack is ready, leaving it running.") var detach = false
    @Flag(help: "Print the final state as one JSON document.") var json = false

    func validate() throws {
        if let readyTimeout, readyTimeout <= 0 { throw ValidationError("--ready-timeout must be positive") }
    }

    func run() async throws {
        var environment = ProcessInfo.processInfo.environment
        let stack = try LocalStack(repository: try LocalStack.findRepository(repo), environment: environment)
        if let binDir { environment["SB_BIN_DIR"] = URL(fileURLWithPath: binDir).standardizedFileURL.path }
        if let readyTimeout { environment["SB_READY_TIMEOUT"] = String(readyTimeout) }
        try FileManager.default.createDirectory(at: stack.stateDirectory, withIntermediateDirectories: true)
        let log = stack.stateDirectory.appendingPathComponent("switchboard-up.log")
        try? FileManager.default.removeItem(at: log)

        // Before anything starts, so Ctrl-C during the start still stops what started.
        StopSignals.install()
        try await run(stack: stack, environment: environment, log: log)
    }

    private func run(stack: LocalStack, environment: [String: String], log: URL) async throws {
        let mode = TerminalMode.forStandardError(json: json)
        let starter = try stack.runScript("up", log: log, environment: environment)
        let started = try await LiveStatus.with(mode: mode, keepRows: true) { status in
            try await Self.watchStart(of: stack, script: starter, log: log, status: status)
        }
        guard started else {
            if let signal = StopSignals.requested {
                note(mode, "\(signal) received; stopping what started")
            } else {
                writeStandardError(
                    "switchboard: the stack did not come up; the last lines of \(log.path):\n\(Self.tail(of: log))\n")
            }
            try await Self.stop(stack, log: log, environment: environment, mode: mode)
            throw ExitCode(1)
        }

        guard let secret = stack.jwtSecret(environment: environment) else {
            throw ValidationError("no JWT secret in SWITCHBOARD_JWT_SECRET or \(stack.stateDirectory.path)/jwt-secret")
        }
        let token = try await TokenAuthority(secret: secret).mint(user: user)
        let gateway = stack.endpoints.baseURL(of: .gateway)
        let services = await ServiceHealth.probeAll(stack.endpoints, timeout: .seconds(1))
        let state = StackState(
            ready: services.allSatisfy(\.ready),
            gateway: gateway.replacingOccurrences(of: "http://", with: "ws://") + "/ws",
            console: "\(gateway)/?token=\(token)", token: token, user: user, stateDirectory: stack.stateDirectory.path,
            logs: stack.logDirectory.path, detached: detach, services: services)
        if json {
            print(try JSONLines.encode(state))
        } else {
            print(
                """

                  Switchboard is running.
                    gateway    \(state.gateway)
                    console    \(state.console)
                    token      \(state.token)      (user \(user))
                    logs       \(state.logs)/<service>.log
                  \(detach ? "Stop it with deploy/scripts/run.sh down (make stop)." : "Ctrl-C stops everything.")

                """)
        }
        if detach { return }

        let died = await Self.watchRunning(stack)
        if let signal = StopSignals.requested { note(mode, "\(signal) received; stopping the stack") }
        try await Self.stop(stack, log: log, environment: environment, mode: mode)
        if let died {
            writeStandardError("switchboard: \(died); see \(stack.logDirectory.path)\n")
            throw ExitCode(1)
        }
    }

    /// Shows servers and services coming up while run.sh starts them; true once run.sh says all are ready.
    static func watchStart(of stack: LocalStack, script: ScriptProcess, log: URL, status: LiveStatus) async throws
        -> Bool
    {
        while true {
            if let exit = script.exitStatus() {
                let rows = await rows(stack: stack, phase: nil)
                status.update(exit == 0 ? rows : rows.map { $0.state == .busy ? StatusRow(.failed, $0.text) : $0 })
                return exit == 0
            }
            if StopSignals.requested != nil {
                // SIGTERM ends run.sh; the caller's `run.sh down` stops whatever it had started.
                script.terminate()
                _ = await script.waitForExit()
                return false
            }
            status.update(await rows(stack: stack, phase: lastLine(of: log)))
            try await Task.sleep(for: .milliseconds(400))
        }
    }

    /// One row per server and service, and one for what run.sh is doing.
    static func rows(stack: LocalStack, phase: String?) async -> [StatusRow] {
        var rows: [StatusRow] = []
        for server in stack.servers {
            let up = await isListening(host: "127.0.0.1", port: server.port)
            rows.append(
                StatusRow(
                    up ? .done : .busy,
                    "\(server.name.padding(toLength: 16, withPad: " ", startingAt: 0)) \(up ? "listening" : "starting") on \(server.port)"
                ))
        }
        for health in await ServiceHealth.probeAll(stack.endpoints, timeout: .seconds(1)) {
            let text = health.ready ? "ready" : health.healthy ? "healthy, \(health.summary)" : "starting"
            rows.append(
                StatusRow(
                    health.ready ? .done : .busy,
                    "\(health.service.padding(toLength: 16, withPad: " ", startingAt: 0)) \(text)"))
        }
        if let phase { rows.append(StatusRow(.busy, "run.sh: \(phase)")) }
        return rows
    }

    /// Waits for a signal; returns why the stack must stop if a service goes down first, nil on a signal.
    static func watchRunning(_ stack: LocalStack) async -> String? {
        // Two failed probes in a row, so a slow answer is not taken for a death.
        var misses: [String: Int] = [:]
        var tick = 0
        while StopSignals.requested == nil {
            try? await Task.sleep(for: .milliseconds(250))
            tick += 1
            guard tick % 8 == 0 else { continue }
            for health in await ServiceHealth.probeAll(stack.endpoints, timeout: .seconds(1)) {
                misses[health.service] = health.healthy ? 0 : misses[health.service, default: 0] + 1
                if misses[health.service, default: 0] >= 2 { return "\(health.service) stopped answering" }
            }
        }
        return nil
    }

    static func stop(_ stack: LocalStack, log: URL, environment: [String: String], mode: TerminalMode) async throws {
        let stopper = try stack.runScript("down", log: log, environment: environment)
        try await LiveStatus.with(mode: mode) { status in
            status.update("stopping the services and the servers…")
            _ = await stopper.waitForExit()
        }
        if mode != .quiet { writeStandardError("stopped\n") }
    }

    /// A line on stderr unless `--json`.
    private func note(_ mode: TerminalMode, _ line: String) {
        if mode != .quiet { writeStandardError(line + "\n") }
    }

    static func isListening(host: String, port: Int) async -> Bool {
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.milliseconds(300)).connect(host: host, port: port).get()
            try? await channel.close()
            return true
        } catch {
            return false
        }
    }

    static func lastLine(of file: URL) -> String? {
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { return nil }
        return text.split(separator: "\n").last.map { strippingEscapes(String($0)) }
    }

    static func tail(of file: URL, lines: Int = 30) -> String {
        let text = (try? String(contentsOf: file, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// run.sh colours its log tags; a status row shows the words only.
    static func strippingEscapes(_ line: String) -> String {
        line.replacingOccurrences(of: "\u{1B}\\[[0-9;]*m", with: "", options: .regularExpression)
    }
}
