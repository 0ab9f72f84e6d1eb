import Foundation
import HummingbirdWSClient
import Logging
import SwitchboardContracts
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Headless Chromium (Debian's `chromium-headless-shell`, or `chromium`) for tests of the web console,
/// driven through the DevTools protocol. Each browser has a profile folder of its own, which is also
/// how `close()` finds every process it started (the browser forks renderers and helpers).
public final class HeadlessBrowser: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    public let debuggingPort: Int
    public let directory: String
    private let process: Mutex<Process?>

    /// The browser binary: SWITCHBOARD_TEST_CHROMIUM, else Debian's. The real binaries come before
    /// /usr/bin's wrapper scripts, which do not exec and would leave the browser behind when stopped.
    public static func findExecutable() throws -> String {
        if let path = ProcessInfo.processInfo.environment["SWITCHBOARD_TEST_CHROMIUM"] { return path }
        let candidates = [
            "/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/chromium",
            "/usr/bin/chromium-headless-shell",
            "/usr/bin/chromium",
        ]
        guard let path = candidates.first(where: FileManager.default.isExecutableFile(atPath:)) else {
            throw Failure(
                description:
                    "no headless Chromium found (looked for \(candidates.joined(separator: ", "))): install Debian's "
                    + "chromium-headless-shell (deploy/scripts/install-deps.sh does) or set SWITCHBOARD_TEST_CHROMIUM")
        }
        return path
    }

    /// Starts the browser on `url`, its profile, log and files under `directory`.
    public init(executable: String, url: String, directory: String, width: Int = 1280, height: Int = 860) throws {
        debuggingPort = ServiceProcesses.freePort()
        self.directory = directory
        try FileManager.default.createDirectory(atPath: "\(directory)/profile", withIntermediateDirectories: true)
        let logPath = "\(directory)/browser.log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--hide-scrollbars", "--mute-audio", "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=\(debuggingPort)", "--user-data-dir=\(directory)/profile",
            // The WebSocket client sends an Origin header, which DevTools refuses unless allowed.
            "--remote-allow-origins=*",
            "--window-size=\(width),\(height)", url,
        ]
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.process = Mutex(process)
    }

    public var log: String { (try? String(contentsOfFile: "\(directory)/browser.log", encoding: .utf8)) ?? "" }

    /// The browser's DevTools WebSocket, from the line it logs once listening. (Its HTTP endpoint,
    /// /json/list, answers with headers FoundationNetworking's URLSession cannot parse.)
    public func webSocketURL(timeout: Duration = .seconds(20)) async throws -> String {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if let line = log.split(separator: "\n").first(where: { $0.hasPrefix("DevTools listening on ws://") }) {
                return String(line.dropFirst("DevTools listening on ".count)).trimmingCharacters(in: .whitespaces)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw Failure(description: "the browser's DevTools never started; its log ends:\n\(log.suffix(2000))")
    }

    /// SIGTERM, a moment to exit, then SIGKILL to whatever of this browser's processes is left.
    public func close() {
        guard
            let process = self.process.withLock({ process in
                defer { process = nil }; return process
            })
        else { return }
        if process.isRunning { process.terminate() }
        let deadline = Date().addingTimeInterval(3)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        for pid in Self.processes(mentioning: "--user-data-dir=\(directory)/profile") { kill(pid, SIGKILL) }
        process.waitUntilExit()
    }

    /// The processes whose command line contains `marker` (this browser's own profile folder).
    static func processes(mentioning marker: String) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry in
            guard let pid = pid_t(entry),
                let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                String(decoding: data, as: UTF8.self).contains(marker)
            else { return nil }
            return pid
        }
    }
}

/// One DevTools protocol connection to the browser: commands answered by id, to the browser itself or
/// (with a session id) to a page it is attached to.
public final class DevToolsSession: Sendable {
    private let outbound: AsyncStream<String>.Continuation
    private let state = Mutex<(next: Int, waiting: [Int: CheckedContinuation<JSONValue, any Error>], closed: Bool)>(
        (1, [:], false))

    private init(outbound: AsyncStream<String>.Continuation) {
        self.outbound = outbound
    }

    /// Connects to the browser at `url`, attaches to its first page, runs `body` with it, disconnects.
    public static func withPage<T: Sendable>(
        browser url: String, _ body: @escaping @Sendable (DevToolsPage) async throws -> T
    ) async throws -> T {
        let result = Locked<Result<T, any Error>?>(nil)
        var logger = Logger(label: "switchboard.tests.devtools")
        logger.logLevel = .warning
        // Screenshots arrive as one base64 message of a few hundred kilobytes.
        try await WebSocketClient.connect(url: url, configuration: .init(maxFrameSize: 1 << 26), logger: logger) {
            inbound, writer, _ in
            let (stream, continuation) = AsyncStream.makeStream(of: String.self)
            let session = DevToolsSession(outbound: continuation)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await message in inbound.messages(maxSize: 1 << 26) {
                        guard case .text(let text) = message else { continue }
                        session.receive(text)
                    }
                    session.failAll(Failure("the DevTools connection closed"))
                }
                group.addTask {
                    for await text in stream { try await writer.write(.text(text)) }
                }
                group.addTask {
                    defer { continuation.finish() }
                    do {
                        let value = try await body(try await session.firstPage())
                        result.withLock { $0 = .success(value) }
                    } catch {
                        result.withLock { $0 = .failure(error) }
                    }
                }
                try await group.next()
                group.cancelAll()
            }
            session.failAll(Failure("the DevTools session ended"))
        }
        guard let outcome = result.withLock({ $0 }) else { throw Failure("could not connect to DevTools at \(url)") }
        return try outcome.get()
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    func firstPage() async throws -> DevToolsPage {
        let targets = try await call("Target.getTargets")["targetInfos"]?.arrayValue ?? []
        guard let target = targets.first(where: { $0["type"]?.stringValue == "page" })?["targetId"] else {
            throw Failure("the browser has no page")
        }
        let attached = try await call("Target.attachToTarget", ["targetId": target, "flatten": true])
        guard let id = attached["sessionId"]?.stringValue else { throw Failure("could not attach to the page") }
        return DevToolsPage(connection: self, sessionID: id)
    }

    /// Sends `method` (to the page of `sessionID`, else to the browser) and returns its `result`; a
    /// protocol error is thrown.
    @discardableResult
    func call(_ method: String, _ params: [String: JSONValue] = [:], sessionID: String? = nil) async throws -> JSONValue
    {
        try await withCheckedThrowingContinuation { continuation in
            let id = state.withLock { state -> Int? in
                guard !state.closed else { return nil }
                defer { state.next += 1 }
                state.waiting[state.next] = continuation
                return state.next
            }
            guard let id else {
                continuation.resume(throwing: Failure("the DevTools session is closed"))
                return
            }
            var message: [String: JSONValue] = [
                "id": .number(Double(id)), "method": .string(method), "params": .object(params),
            ]
            if let sessionID { message["sessionId"] = .string(sessionID) }
            guard let data = try? JSONEncoder().encode(JSONValue.object(message)) else {
                state.withLock { _ = $0.waiting.removeValue(forKey: id) }
                continuation.resume(throwing: Failure("\(method): parameters that are not JSON"))
                return
            }
            outbound.yield(String(decoding: data, as: UTF8.self))
        }
    }

    private func receive(_ text: String) {
        guard let message = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)),
            let id = message["id"]?.intValue
        else {
            return  // an event: none is enabled, so nothing to route
        }
        guard let waiter = state.withLock({ $0.waiting.removeValue(forKey: id) }) else { return }
        if let error = message["error"] {
            waiter.resume(throwing: Failure("DevTools error: \(error["message"]?.stringValue ?? "\(error)")"))
        } else {
            waiter.resume(returning: message["result"] ?? .null)
        }
    }

    private func failAll(_ error: Failure) {
        let waiting = state.withLock { state -> [CheckedContinuation<JSONValue, any Error>] in
            state.closed = true
            defer { state.waiting = [:] }
            return Array(state.waiting.values)
        }
        for waiter in waiting { waiter.resume(throwing: error) }
    }
}

/// A page of the browser, through the browser's connection.
public struct DevToolsPage: Sendable {
    let connection: DevToolsSession
    let sessionID: String

    /// Sends `method` to the page and returns its `result`.
    @discardableResult
    public func call(_ method: String, _ params: [String: JSONValue] = [:]) async throws -> JSONValue {
        try await connection.call(method, params, sessionID: sessionID)
    }

    /// Evaluates `expression` in the page and returns its value (JSON-serialisable values only).
    @discardableResult
    public func evaluate(_ expression: String) async throws -> JSONValue {
        let answer = try await call(
            "Runtime.evaluate", ["expression": .string(expression), "returnByValue": true, "awaitPromise": true])
        if let exception = answer["exceptionDetails"] {
            throw DevToolsSession.Failure(
                "\(expression) threw \(exception["exception"]?["description"]?.stringValue ?? "\(exception)")")
        }
        return answer["result"]?["value"] ?? .null
    }

}
