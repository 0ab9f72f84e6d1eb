import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import Synchronization

/// The six services as real processes, for end-to-end tests: started from the build's bin folder,
/// pointed at the test servers, stopped with SIGTERM (or killed) at the end. Given a container
/// image, each service is instead a container of that image (podman, host network, read-only root
/// filesystem), with the same settings, ports and logs; the `podman run` process stands for it.
public final class ServiceProcesses: Sendable {
    public struct Launched: Sendable {
        public var name: String
        public var httpPort: Int
        /// Where `/readyz` and `/metrics` answer (SWITCHBOARD_ADMIN_PORT).
        public var adminPort: Int
        public var logPath: String
        /// The podman container's name, when the service runs from the image.
        public var containerName: String?
    }

    private let processes = Mutex<[(Launched, Process)]>([])
    public let jwtSecret: String
    public let binDirectory: String
    public let container: ContainerImage?
    /// The services' SWITCHBOARD_REDIS_URL: the test Redis, or the test Redis Cluster.
    public let redisURL: String
    private let logDirectory: String

    /// A fresh random secret per stack unless given: the services refuse published ones.
    public init(
        jwtSecret: String = "e2e-" + UUID().uuidString + UUID().uuidString, container: ContainerImage? = nil,
        redisURL: String = TestEnvironment.redisURL
    ) throws {
        self.jwtSecret = jwtSecret
        self.container = container
        self.redisURL = redisURL
        // Inside the image: where the Dockerfile puts the binaries.
        binDirectory = try container == nil ? Self.findBinDirectory() : "/usr/local/bin"
        logDirectory = NSTemporaryDirectory() + "switchboard-e2e-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
    }

    /// The folder with the built executables: SWITCHBOARD_BIN_DIR, else beside the test bundle.
    static func findBinDirectory() throws -> String {
        if let directory = ProcessInfo.processInfo.environment["SWITCHBOARD_BIN_DIR"] { return directory }
        var url = URL(fileURLWithPath: CommandLine.arguments[0])
        while url.path != "/" {
            if FileManager.default.isExecutableFile(atPath: url.appendingPathComponent("gateway").path) {
                return url.path
            }
            url.deleteLastPathComponent()
        }
        struct Missing: Error, CustomStringConvertible {
            var description: String { "cannot find the gateway executable; set SWITCHBOARD_BIN_DIR or run `make test`" }
        }
        throw Missing()
    }

    /// Every port this test process handed out. The kernel gives a just-closed ephemeral port out
    /// again, so two services started back to back could otherwise get the same one, and a test would
    /// talk to the wrong service.
    private static let handedOut = Mutex<Set<Int>>([])

    /// A free TCP port on loopback, never one this test process handed out before.
    public static func freePort() -> Int {
        while true {
            let port = unusedPort()
            if handedOut.withLock({ $0.insert(port).inserted }) { return port }
        }
    }

    private static func unusedPort() -> Int {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socketFD) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socketFD, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    @discardableResult
    public func start(_ name: String, environment extra: [String: String] = [:]) throws -> Launched {
        let port = Self.freePort()
        let adminPort = Self.freePort()
        let launched = Launched(
            name: name, httpPort: port, adminPort: adminPort, logPath: "\(logDirectory)/\(name)-\(port).log",
            containerName: container.map { _ in "sb-test-\(name)-\(port)" })
        FileManager.default.createFile(atPath: launched.logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: launched.logPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "\(binDirectory)/\(name)")
        var environment = ProcessInfo.processInfo.environment
        environment["SWITCHBOARD_KAFKA_BROKERS"] = TestEnvironment.kafkaBrokers
        environment["SWITCHBOARD_REDIS_URL"] = redisURL
        environment["SWITCHBOARD_POSTGRES_URL"] = TestEnvironment.postgresURL
        environment["SWITCHBOARD_JWT_SECRET"] = jwtSecret
        environment["SWITCHBOARD_HTTP_HOST"] = "127.0.0.1"
        environment["SWITCHBOARD_HTTP_PORT"] = String(port)
        environment["SWITCHBOARD_ADMIN_PORT"] = String(adminPort)
        environment["SWITCHBOARD_INSTANCE_ID"] = "\(name)-\(port)"
        environment["SWITCHBOARD_LOG_LEVEL"] = environment["SWITCHBOARD_TEST_SERVICE_LOG_LEVEL"] ?? "info"
        environment.merge(extra) { $1 }
        process.environment = environment
        if let container, let containerName = launched.containerName {
            // The service's settings, no more: the test process's own environment stays outside.
            let settings = environment.filter {
                $0.key.hasPrefix("SWITCHBOARD_") && !$0.key.hasPrefix("SWITCHBOARD_TEST_")
            }
            let run = container.runArguments(name: containerName, environment: settings)
            process.executableURL = URL(fileURLWithPath: container.podman)
            process.arguments = run.arguments + [name]
            process.environment = run.environment
        }
        process.standardOutput = log
        process.standardError = log
        try process.run()
        processes.withLock { $0.append((launched, process)) }
        return launched
    }

    /// Starts all six services; returns the gateway's.
    public func startAll(
        agentEnvironment: [String: String] = [:], gatewayEnvironment: [String: String] = [:],
        orchestratorEnvironment: [String: String] = [:], voiceEnvironment: [String: String] = [:],
        runnerEnvironment: [String: String] = [:], everyService: [String: String] = [:]
    ) throws -> Launched {
        func with(_ own: [String: String]) -> [String: String] { everyService.merging(own) { $1 } }
        let gateway = try start("gateway", environment: with(gatewayEnvironment))
        try start("orchestrator", environment: with(orchestratorEnvironment))
        try start("voice-worker", environment: with(voiceEnvironment))
        try start("notifier", environment: everyService)
        try start("workflow-runner", environment: with(runnerEnvironment))
        try start("agent-worker", environment: with(agentEnvironment))
        return gateway
    }

    /// Waits until every started service answers 200 on /readyz.
    public func waitUntilReady(timeout: Duration = .seconds(90)) async throws {
        let launched = processes.withLock { $0.map(\.0) }
        for service in launched {
            let ready = await eventually(timeout: timeout, every: .milliseconds(200)) {
                await Self.httpStatus("http://127.0.0.1:\(service.adminPort)/readyz") == 200
            }
            if !ready {
                struct NotReady: Error, CustomStringConvertible { var description: String }
                let log = (try? String(contentsOfFile: service.logPath, encoding: .utf8)) ?? ""
                throw NotReady(description: "\(service.name) never became ready; its log ends:\n\(log.suffix(3000))")
            }
        }
    }

    public func process(named name: String) -> Process? {
        processes.withLock { $0.first(where: { $0.0.name == name })?.1 }
    }

    /// SIGKILL, as a crash would; the process is left out of `stopAll`'s exit codes.
    public func kill(httpPort: Int) {
        let removed = processes.withLock { processes -> (Launched, Process)? in
            guard let index = processes.firstIndex(where: { $0.0.httpPort == httpPort }) else { return nil }
            return processes.remove(at: index)
        }
        guard let removed else { return }
        let (launched, process) = removed
        if let container, let name = launched.containerName {
            // SIGKILL to `podman run` would leave the container running: kill the container itself.
            _ = try? container.podman(["kill", "--signal", "KILL", name])
        }
        Foundation.kill(process.processIdentifier, SIGKILL)
        // Not `waitUntilExit`: see `exitStatus`.
        var status: Int32 = 0
        for _ in 0..<200 where process.isRunning {
            if waitpid(process.processIdentifier, &status, WNOHANG) == process.processIdentifier { break }
            usleep(50_000)
        }
    }

    /// Every started service with its container's name (nil for a plain process).
    public var launched: [Launched] {
        processes.withLock { $0.map(\.0) }
    }

    /// The logs of every running instance of one service, with its HTTP and admin ports.
    public func logs(of name: String) -> [(httpPort: Int, adminPort: Int, log: String)] {
        let launched = processes.withLock { $0.map(\.0).filter { $0.name == name } }
        return launched.map {
            ($0.httpPort, $0.adminPort, (try? String(contentsOfFile: $0.logPath, encoding: .utf8)) ?? "")
        }
    }

    /// The admin port of the first running instance of `name`.
    public func adminPort(of name: String) -> Int? {
        processes.withLock { $0.first(where: { $0.0.name == name })?.0.adminPort }
    }

    public func log(of name: String) -> String {
        let path = processes.withLock { $0.first(where: { $0.0.name == name })?.0.logPath }
        return path.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? ""
    }

    /// SIGTERM to each, then waits for them to exit (SIGKILL after `grace`); returns their exit codes.
    @discardableResult
    ///
    /// 30 s: a consumer stopped while its group rebalances first finishes joining (up to 15 s,
    /// `KafkaConsumer.joinGraceOnClose`), then leaves; with 20 s a DoubledStackTests orchestrator was
    /// SIGKILLed once in the middle of that (the manifests give 50 s).
    public func stopAll(grace: Duration = .seconds(30)) async -> [String: Int32] {
        let all = processes.withLock { $0 }
        for (_, process) in all where process.isRunning { process.terminate() }
        let deadline = ContinuousClock.now.advanced(by: grace)
        var codes: [String: Int32] = [:]
        for (launched, process) in all {
            while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
            if process.isRunning {
                if let container, let name = launched.containerName {
                    _ = try? container.podman(["kill", "--signal", "KILL", name])
                }
                Foundation.kill(process.processIdentifier, SIGKILL)
            }
            codes["\(launched.name):\(launched.httpPort)"] = await Self.exitStatus(process)
        }
        return codes
    }

    /// The process's exit status once it has exited. Foundation's exit monitor sometimes misses a child's
    /// exit (a zombie left, `isRunning` true for ever, `waitUntilExit` spinning a core): after a while the
    /// child is reaped here. -1 when it never exited.
    static func exitStatus(_ process: Process) async -> Int32 {
        let deadline = ContinuousClock.now + .seconds(10)
        while process.isRunning && ContinuousClock.now < deadline {
            var status: Int32 = 0
            if waitpid(process.processIdentifier, &status, WNOHANG) == process.processIdentifier {
                // Exited normally: the status's high byte; by a signal: 128 + the signal, as a shell says.
                return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return process.isRunning ? -1 : process.terminationStatus
    }

    public static func httpStatus(_ url: String) async -> Int? {
        await withCheckedContinuation { continuation in
            var request = URLRequest(url: URL(string: url)!)
            request.timeoutInterval = 2
            URLSession.shared.dataTask(with: request) { _, response, _ in
                continuation.resume(returning: (response as? HTTPURLResponse)?.statusCode)
            }.resume()
        }
    }
}
