import ArgumentParser
import Foundation
import Histogram
import Synchronization
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardWorkflow

/// Issue 7's benchmark: many concurrent runs of a 10-node DAG (two llm nodes answered at once by the
/// offline engine), each from its own `/ws/{session_id}` connection. Reports the latency of node status
/// events (the node's state change in the runner → the frame read by the client), runs per second and
/// the workflow-runner's resident memory.
struct WorkflowBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "workflows",
        abstract:
            "Run many 10-node workflows at once; time node status events, count runs per second, watch the runner's memory.",
        discussion: """
            Run the agent-worker with SWITCHBOARD_AGENT_TOKEN_RATE=0 and SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS=0 \
            (instant llm nodes). Latencies come from the events' millisecond timestamps: ±1 ms.
            """)

    @Option(help: "The gateway's WebSocket base URL (the session id is appended).") var gateway =
        "ws://127.0.0.1:8080/ws"
    @Option(help: "Runs started at once.") var runs = 100
    @Option(
        help:
            "Runs started at once before the measured ones, and not measured: a fresh stack's first runs open its connections and pools."
    )
    var warmup = 20
    @Option(help: "Process id of the workflow-runner, for its resident memory (read from /proc).") var runnerPid: Int32?
    @Option(help: "HS256 secret (env SWITCHBOARD_JWT_SECRET).") var secret: String?

    @OptionGroup var output: BenchOutput

    func report() async throws {
        let secret = try setting(secret, environment: "JWT_SECRET", default: SwitchboardConfiguration.developmentSecret)
        let authority = try await TokenAuthority(secret: secret)
        if warmup > 0 {
            BenchReporter.begin("warm-up runs", total: warmup)
            try await withThrowingTaskGroup(of: RunResult.self) { group in
                for index in 0..<warmup {
                    let token = try await authority.mint(user: "bench-wf-warmup-\(index)")
                    let url = "\(self.gateway)/warmup-\(UUID().uuidString.prefix(8))-\(index)"
                    group.addTask { try await Self.oneRun(url: url, token: token) }
                }
                for try await _ in group { BenchReporter.step() }
            }
        }
        let before = try runnerPid.map(ConnectionsBench.residentBytes(pid:))
        let peak = PeakMemory(before ?? 0)
        let pid = runnerPid, runs = runs, gateway = gateway
        let started = ContinuousClock.now
        let outcome = try await withThrowingTaskGroup(of: RunResult.self) { group -> [RunResult] in
            if let pid {
                group.addTask {
                    while !Task.isCancelled {
                        if let bytes = try? ConnectionsBench.residentBytes(pid: pid) { peak.record(bytes) }
                        try? await Task.sleep(for: .milliseconds(100))
                    }
                    return RunResult(latencies: [], status: "sampler")
                }
            }
            BenchReporter.begin("runs finished", total: runs)
            for index in 0..<runs {
                let token = try await authority.mint(user: "bench-wf-\(index)")
                let url = "\(gateway)/bench-\(UUID().uuidString.prefix(8))-\(index)"
                group.addTask { try await Self.oneRun(url: url, token: token) }
            }
            var results: [RunResult] = []
            while results.count < runs, let result = try await group.next() {
                if result.status != "sampler" {
                    results.append(result)
                    BenchReporter.step()
                }
            }
            group.cancelAll()
            return results
        }
        let elapsed = ContinuousClock.now - started
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        for latency in outcome.flatMap(\.latencies) { _ = histogram.record(latency) }
        let completed = outcome.filter { $0.status == "workflow_completed" }.count
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        BenchReporter.say(
            "workflows: \(runs) concurrent runs of a 10-node DAG, \(completed) completed in \(String(format: "%.2f", seconds)) s"
        )
        BenchReporter.record(LatencySummary(name: "node status event", histogram: histogram))
        BenchReporter.say(String(format: "runs per second: %.1f", Double(completed) / seconds))
        if let before {
            BenchReporter.say(
                String(
                    format: "workflow-runner resident memory: %.1f MiB before, %.1f MiB peak",
                    Double(before) / 1_048_576, Double(peak.bytes) / 1_048_576))
        }
        if completed < runs {
            throw ValidationError("\(runs - completed) runs did not complete: \(outcome.map(\.status))")
        }
    }

    final class PeakMemory: Sendable {
        private let value: Atomic<Int>
        init(_ bytes: Int) { value = Atomic(bytes) }
        func record(_ bytes: Int) { value.max(bytes, ordering: .relaxed) }
        var bytes: Int { value.load(ordering: .relaxed) }
    }

    struct RunResult: Sendable {
        var latencies: [UInt64]
        var status: String
    }

    static func oneRun(url: String, token: String) async throws -> RunResult {
        let (result, _) = try await WorkflowClient.withConnection(url: url, token: token) { client -> RunResult in
            _ = await client.frames.first("connection_established", within: .seconds(30))
            client.send(["type": "execute_workflow", "workflow": dag])
            var latencies: [UInt64] = []
            let parser = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
            while let received = await client.frames.next(within: .seconds(60)) {
                let frame = received.frame
                let type = frame["type"]?.stringValue ?? ""
                if type == "node_status_update", let text = frame["timestamp"]?.stringValue,
                    let at = try? parser.parse(text)
                {
                    latencies.append(
                        UInt64(max(0, (Date().timeIntervalSince1970 - at.timeIntervalSince1970) * 1_000_000)))
                }
                if [
                    "workflow_completed", "workflow_failed", "workflow_stopped", "workflow_validation_error",
                    "workflow_execution_error", "error",
                ]
                .contains(type) {
                    return RunResult(latencies: latencies, status: type)
                }
            }
            return RunResult(latencies: latencies, status: "timeout")
        }
        return result ?? RunResult(latencies: [], status: "closed")
    }

    /// The end-to-end tests' ten nodes with two llm nodes: a condition (one branch skipped), a parallel branch,
    /// a merge.
    static let dag = WorkflowDefinition.tenNodes(delayMs: 0, llmSideBranch: true).json
}
