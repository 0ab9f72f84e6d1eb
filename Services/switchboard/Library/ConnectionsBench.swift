import ArgumentParser
import Foundation
import Histogram
import Synchronization
import SwitchboardContracts
import SwitchboardRuntime

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Opens many idle authenticated WebSocket connections, reports the gateway's resident memory per
/// connection, then broadcasts once and times how long until the last connection has it.
struct ConnectionsBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "connections",
        abstract: "Idle connections: gateway memory per connection, then one broadcast to all of them.")

    @Option(help: "The gateway's WebSocket URL.") var gateway = "ws://127.0.0.1:8080/ws"
    @Option(help: "Process id of the gateway (for its resident memory, read from /proc).") var gatewayPid: Int32
    @Option(help: "Connections to open.") var connections = 10_000
    @Option(help: "Connections opened at once.") var concurrency = 200
    @Option(help: "HS256 secret (env SWITCHBOARD_JWT_SECRET).") var secret: String?

    @OptionGroup var output: BenchOutput

    func report() async throws {
        let secret = try setting(secret, environment: "JWT_SECRET", default: SwitchboardConfiguration.developmentSecret)
        let authority = try await TokenAuthority(secret: secret)
        let before = try Self.residentBytes(pid: gatewayPid)
        let state = BenchState()
        let url = gateway
        let runID = UUID().uuidString.prefix(8)
        let clock = ContinuousClock()
        let openingStarted = clock.now
        BenchReporter.say("opening \(connections) connections…")
        BenchReporter.begin("connected", total: connections)
        try await withThrowingTaskGroup(of: Void.self) { group in
            var launched = 0
            for index in 0..<connections {
                if launched - state.connected.load(ordering: .relaxed) - state.failed.load(ordering: .relaxed)
                    >= concurrency
                {
                    // Keep at most `concurrency` handshakes in flight.
                    while launched - state.connected.load(ordering: .relaxed) - state.failed.load(ordering: .relaxed)
                        >= concurrency
                    {
                        try await Task.sleep(for: .milliseconds(5))
                    }
                }
                let token = try await authority.mint(user: "bench-\(runID)-\(index)")
                launched += 1
                group.addTask {
                    do {
                        try await ChatClient.withConnection(url: url, token: token) { client in
                            client.send(ClientCommand(id: "p", type: ClientCommandType.ping, data: ["timestamp": 1]))
                            guard await client.frames.first(within: .seconds(60), where: { $0.type == "PONG" }) != nil
                            else {
                                state.failed.add(1, ordering: .relaxed)
                                return false
                            }
                            state.connected.add(1, ordering: .relaxed)
                            BenchReporter.step()
                            await state.gate.wait()
                            guard
                                let received = await client.frames.first(
                                    within: .seconds(120), where: { $0.type == FrameType.userNotification }),
                                let sentAt = state.broadcastAt.withLock({ $0 })
                            else { return false }
                            _ = state.latencies.withLock { $0.record(microseconds(received.receivedAt - sentAt)) }
                            return true
                        }
                    } catch {
                        state.failed.add(1, ordering: .relaxed)
                    }
                }
            }
            while state.connected.load(ordering: .relaxed) + state.failed.load(ordering: .relaxed) < connections {
                try await Task.sleep(for: .milliseconds(50))
            }
            let openingTime = clock.now - openingStarted
            try await Task.sleep(for: .seconds(3))  // let the gateway settle (routing heartbeat, GC of buffers)
            let after = try Self.residentBytes(pid: gatewayPid)
            let open = state.connected.load(ordering: .relaxed)
            BenchReporter.say("connected \(open) (\(state.failed.load(ordering: .relaxed)) failed) in \(openingTime)")
            BenchReporter.say(
                String(
                    format: "gateway resident memory: %.1f MiB before, %.1f MiB after: %.1f KiB per connection",
                    Double(before) / 1_048_576, Double(after) / 1_048_576,
                    Double(after - before) / 1024 / Double(max(open, 1))))
            state.gate.open()
            try await Task.sleep(for: .milliseconds(200))
            let admin = try await authority.mint(user: "bench-admin", roles: ["admin"])
            state.broadcastAt.withLock { $0 = clock.now }
            try await Self.broadcast(gateway: gateway, token: admin)
            try await group.waitForAll()
        }
        let histogram = state.latencies.withLock { $0 }
        BenchReporter.say(
            "broadcast reached \(histogram.totalCount) of \(state.connected.load(ordering: .relaxed)) connections")
        BenchReporter.record(LatencySummary(name: "broadcast → receipt", histogram: histogram))
    }

    static func residentBytes(pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { throw ValidationError("no VmRSS for pid \(pid)") }
        return kib * 1024
    }

    static func broadcast(gateway: String, token: String) async throws {
        let base = gateway.replacingOccurrences(of: "ws://", with: "http://").replacingOccurrences(of: "/ws", with: "")
        var request = URLRequest(url: URL(string: base + "/api/broadcast")!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(#"{"type":"info","title":"bench","message":"broadcast"}"#.utf8)
        let (_, response) = try await URLSession.shared.data(for: request)
        guard (response as? HTTPURLResponse)?.statusCode == 200 else {
            throw ValidationError("broadcast refused: \(response)")
        }
    }
}

private final class BenchState: Sendable {
    let connected = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    let latencies = Mutex(Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three))
    let broadcastAt = Mutex<ContinuousClock.Instant?>(nil)
    let gate = AsyncGate()
}

/// Holds tasks until opened.
final class AsyncGate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { continuation in
            let isOpen = state.withLock { state in
                if !state.open { state.waiters.append(continuation) }
                return state.open
            }
            if isOpen { continuation.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }
}
