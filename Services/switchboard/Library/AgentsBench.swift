import ArgumentParser
import Foundation
import Histogram
import Logging
import Synchronization
import SwitchboardContracts
import SwitchboardRuntime

/// The wall-clock instant (µs since the epoch) a frame reached the client: now, minus how long it
/// waited in the inbox.
func arrivalMicros(_ received: FrameInbox.Received) -> Int64 {
    Clock.epochMicroseconds() - Int64(microseconds(.now - received.receivedAt))
}

/// Multi-agent benchmark 1: the platform's own share of a role's time to first token. Every role's
/// first chunk carries the instant its engine produced its first token (`firstTokenAt`); the client
/// times its arrival. Between the two: the chunker, Kafka, the notifier, Redis and the gateway.
struct OverheadBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "overhead",
        abstract:
            "The engine's first token → the client's first chunk, for every role of every run (goal p99 < 30 ms).",
        discussion:
            "Run the agent-worker with SWITCHBOARD_AGENT_TOKEN_RATE=0 (bench.sh does): at a slow token rate the chunker holds a first chunk until it has 5 tokens or 75 ms have passed, by design."
    )

    @Option(help: "The gateway's WebSocket URL.") var gateway = "ws://127.0.0.1:8080/ws"
    @Option(help: "Messages to send, one run at a time.") var messages = 100
    @Option(help: "Messages sent first and not measured.") var warmup = 5
    @Option(help: "Collaboration pattern of the runs.") var pattern = "parallel"
    @Option(help: "HS256 secret (env SWITCHBOARD_JWT_SECRET).") var secret: String?

    @OptionGroup var output: BenchOutput

    func report() async throws {
        let secret = try setting(secret, environment: "JWT_SECRET", default: SwitchboardConfiguration.developmentSecret)
        let token = try await TokenAuthority(secret: secret).mint(user: "bench-\(UUID().uuidString.prefix(8))")
        let conversation = "overhead-\(UUID().uuidString.lowercased())"
        let (messages, warmup, pattern) = (messages, warmup, pattern)
        let outcome = try await ChatClient.withConnection(url: gateway, token: token, logger: quietLogger) { client in
            var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            var incomplete = 0
            BenchReporter.begin("runs", total: warmup + messages)
            for index in 0..<(warmup + messages) {
                BenchReporter.step()
                client.send(
                    try ClientCommand(
                        id: "overhead-\(index)",
                        payload: SendMessage(
                            conversationId: conversation, content: "compare option \(index) with the others",
                            pattern: pattern)))
                var complete = false
                while let received = await client.frames.next(within: .seconds(30)) {
                    let frame = received.frame
                    if frame.type == "ERROR" {
                        throw ValidationError("the gateway refused a message: \(frame.error?.message ?? "")")
                    }
                    if frame.type == FrameType.collaborationComplete {
                        complete = true
                        break
                    }
                    guard index >= warmup,
                        frame.type == FrameType.agentChunk || frame.type == FrameType.messageStreamChunk,
                        let firstToken = frame.data["firstTokenAt"]?.doubleValue
                    else { continue }
                    _ = histogram.record(UInt64(max(0, arrivalMicros(received) - Int64(firstToken))))
                }
                if !complete { incomplete += 1 }
            }
            return (histogram, incomplete)
        }
        guard let result = outcome.result else {
            throw ValidationError("the connection closed (code \(outcome.closeCode.map(String.init) ?? "none"))")
        }
        let (histogram, incomplete) = result
        BenchReporter.say(
            "overhead over \(messages) \(pattern) runs (\(incomplete) incomplete), one role's first chunk per sample")
        BenchReporter.record(LatencySummary(name: "engine first token → client", histogram: histogram))
    }
}

/// Multi-agent benchmark 2: many conversations at once on the parallel pattern, the offline engine
/// paced like a model; chunks delivered per second, chunk latency, and the services' memory.
struct AgentsBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "agents",
        abstract:
            "Concurrent multi-agent runs: chunks/s delivered, chunk creation → client latency, orchestrator and agent-worker RSS.",
        discussion:
            "Run the agent-worker at the token rate to study (bench.sh: 30 tokens/s) with enough concurrency for every parallel role (SWITCHBOARD_AGENT_CONCURRENCY)."
    )

    @Option(help: "The gateway's WebSocket URL.") var gateway = "ws://127.0.0.1:8080/ws"
    @Option(help: "Conversations, each one client sending one message at the same moment.") var conversations = 200
    @Option(help: "Collaboration pattern of the runs.") var pattern = "parallel"
    @Option(help: "The orchestrator's pid, for its RSS.") var orchestratorPid: Int32?
    @Option(help: "The agent-worker's pid, for its RSS.") var agentWorkerPid: Int32?
    @Option(help: "Seconds a run may take.") var timeout = 300
    @Option(help: "HS256 secret (env SWITCHBOARD_JWT_SECRET).") var secret: String?

    final class State: Sendable {
        let connected = Atomic<Int>(0)
        let go = Atomic<Bool>(false)
        let chunks = Atomic<Int>(0)
        let completed = Atomic<Int>(0)
        let failed = Atomic<Int>(0)
        /// Chunk creation (the frame's timestamp, ms) → receipt, µs.
        let latency = Mutex(
            Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three))
        let lastChunkAt = Atomic<Int64>(0)
    }

    @OptionGroup var output: BenchOutput

    func report() async throws {
        let secret = try setting(secret, environment: "JWT_SECRET", default: SwitchboardConfiguration.developmentSecret)
        let authority = try await TokenAuthority(secret: secret)
        let runID = UUID().uuidString.prefix(8).lowercased()
        let state = State()
        let (url, pattern, count, timeout) = (gateway, pattern, conversations, timeout)
        let pids = [("orchestrator", orchestratorPid), ("agent-worker", agentWorkerPid)].compactMap { name, pid in
            pid.map { (name, $0) }
        }
        let memory = MemorySampler(pids: pids)
        let before = memory.sample()
        BenchReporter.say("connecting \(count) clients…")
        BenchReporter.begin("connected", total: count)
        var startedAt: Int64 = 0
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                await memory.run(until: {
                    state.completed.load(ordering: .relaxed) + state.failed.load(ordering: .relaxed) >= count
                })
            }
            for index in 0..<count {
                let token = try await authority.mint(user: "agents-\(runID)-\(index)")
                group.addTask {
                    do {
                        try await Self.converse(
                            url: url, token: token, conversation: "agents-\(runID)-\(index)", pattern: pattern,
                            index: index,
                            timeout: timeout, state: state)
                    } catch {
                        state.failed.add(1, ordering: .relaxed)
                    }
                }
            }
            while state.connected.load(ordering: .relaxed) + state.failed.load(ordering: .relaxed) < count {
                try await Task.sleep(for: .milliseconds(20))
            }
            BenchReporter.say(
                "\(state.connected.load(ordering: .relaxed)) connected; \(count) \(pattern) runs start now…")
            BenchReporter.begin("runs complete", total: count)
            startedAt = Clock.epochMicroseconds()
            state.go.store(true, ordering: .releasing)
            try await group.waitForAll()
        }
        let chunks = state.chunks.load(ordering: .relaxed)
        let seconds = Double(max(state.lastChunkAt.load(ordering: .relaxed) - startedAt, 1)) / 1e6
        BenchReporter.say(
            "agents: \(count) concurrent \(pattern) runs, \(state.completed.load(ordering: .relaxed)) complete, \(state.failed.load(ordering: .relaxed)) failed"
        )
        BenchReporter.say(
            String(format: "chunks delivered: %d in %.2f s = %.0f chunks/s", chunks, seconds, Double(chunks) / seconds))
        BenchReporter.record(LatencySummary(name: "chunk creation → client", histogram: state.latency.withLock { $0 }))
        for (name, _) in pids {
            BenchReporter.say(
                String(
                    format: "%@ RSS: %.1f MiB before, %.1f MiB peak", name, Double(before[name] ?? 0) / 1024,
                    Double(memory.peak(name)) / 1024))
        }
    }

    static func converse(
        url: String, token: String, conversation: String, pattern: String, index: Int, timeout: Int, state: State
    ) async throws {
        try await ChatClient.withConnection(url: url, token: token, logger: quietLogger) { client in
            state.connected.add(1, ordering: .relaxed)
            BenchReporter.step()
            while !state.go.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(5)) }
            client.send(
                try ClientCommand(
                    id: "m",
                    payload: SendMessage(
                        conversationId: conversation, content: "compare the options for launch \(index)",
                        pattern: pattern)))
            let deadline = ContinuousClock.now + .seconds(timeout)
            while ContinuousClock.now < deadline, let received = await client.frames.next(within: .seconds(60)) {
                let frame = received.frame
                if frame.type == FrameType.collaborationComplete {
                    state.completed.add(1, ordering: .relaxed)
                    BenchReporter.step()
                    return
                }
                guard frame.type == FrameType.agentChunk || frame.type == FrameType.messageStreamChunk else { continue }
                let arrived = arrivalMicros(received)
                state.chunks.add(1, ordering: .relaxed)
                _ = state.lastChunkAt.max(arrived, ordering: .relaxed)
                _ = state.latency.withLock { $0.record(UInt64(max(0, arrived - frame.timestamp * 1000))) }
            }
            state.failed.add(1, ordering: .relaxed)
        }
    }
}

/// Resident memory of processes from /proc/<pid>/status (kB), sampled twice a second.
final class MemorySampler: Sendable {
    let pids: [(String, Int32)]
    private let peaks = Mutex<[String: Int]>([:])

    init(pids: [(String, Int32)]) {
        self.pids = pids
    }

    func sample() -> [String: Int] {
        var values: [String: Int] = [:]
        for (name, pid) in pids {
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
                let kB = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({
                    Int($0)
                })
            else { continue }
            values[name] = kB
        }
        peaks.withLock { peaks in
            for (name, value) in values { peaks[name] = max(peaks[name] ?? 0, value) }
        }
        return values
    }

    func peak(_ name: String) -> Int { peaks.withLock { $0[name] ?? 0 } }

    func run(until done: @Sendable () -> Bool) async {
        while !done() {
            _ = sample()
            try? await Task.sleep(for: .milliseconds(500))
        }
        _ = sample()
    }
}
