import Foundation
import SwitchboardCLI
import SwitchboardTestSupport
import Testing

/// Every `switchboard bench` scenario, run briefly against one real stack, so none stops working
/// unnoticed (the roundtrip scenario once stopped at message 83 when the per-user rate limit came).
/// Sizes are tiny: this checks that each scenario runs to the end, not how fast anything is.
@Suite(.serialized, .timeLimit(.minutes(5))) struct BenchSmokeTests {
    @Test func everyScenarioRunsToTheEnd() async throws {
        try await TestEnvironment.requirePostgres()
        try await ServiceProcesses.withStack(
            agentEnvironment: ["SWITCHBOARD_AGENT_TOKEN_RATE": "0", "SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS": "0"],
            voiceEnvironment: ["SWITCHBOARD_VOICE_ASR_ENGINE": "instant", "SWITCHBOARD_VOICE_TTS_ENGINE": "instant"]
        ) { stack, ws, _ in
            let http = ws.replacingOccurrences(of: "ws://", with: "http://").replacingOccurrences(of: "/ws", with: "")
            let brokers = TestEnvironment.kafkaBrokers
            let postgres = TestEnvironment.postgresURL
            func pid(_ name: String) throws -> String {
                String(try #require(stack.process(named: name)?.processIdentifier, "no \(name) process"))
            }
            let voiceWorker = "http://127.0.0.1:\(try #require(stack.logs(of: "voice-worker").first?.adminPort))"
            let scenarios: [(String, [String])] = [
                ("notifier-codec", ["--events", "2000"]),
                ("bus", ["--brokers", brokers, "--messages", "50", "--rate", "100"]),
                ("roundtrip", ["--gateway", ws, "--messages", "25", "--warmup", "2", "--messages-per-user", "10"]),
                ("overhead", ["--gateway", ws, "--messages", "2", "--warmup", "1"]),
                (
                    "agents",
                    [
                        "--gateway", ws, "--conversations", "3", "--timeout", "60", "--orchestrator-pid",
                        try pid("orchestrator"),
                        "--agent-worker-pid", try pid("agent-worker"),
                    ]
                ),
                (
                    "fanout",
                    [
                        "--gateway", ws, "--brokers", brokers, "--conversations", "2", "--clients-per-conversation",
                        "2", "--rate", "5",
                        "--duration", "2",
                    ]
                ),
                (
                    "workflows",
                    ["--gateway", ws, "--runs", "2", "--warmup", "1", "--runner-pid", try pid("workflow-runner")]
                ),
                (
                    "connections",
                    [
                        "--gateway", ws, "--gateway-pid", try pid("gateway"), "--connections", "50", "--concurrency",
                        "10",
                    ]
                ),
                (
                    "history",
                    [
                        "--gateway", http, "--postgres", postgres, "--sessions", "2", "--messages", "220", "--users",
                        "2", "--requests", "10",
                        "--warmup", "2", "--tag", "smoke\(UUID().uuidString.prefix(6).lowercased())",
                    ]
                ),
                (
                    "ingest",
                    [
                        "--brokers", brokers, "--postgres", postgres, "--messages", "100", "--conversations", "10",
                        "--timeout", "60",
                    ]
                ),
                (
                    "notifications",
                    [
                        "--gateway", http, "--redis-url", TestEnvironment.redisURL, "--rate", "50", "--duration", "2",
                        "--users", "5",
                        "--concurrency", "8",
                    ]
                ),
                ("voice-overhead", ["--gateway", http, "--turns", "1", "--warmup", "0"]),
                (
                    "voice-devices",
                    [
                        "--gateway", http, "--voice-worker", voiceWorker, "--devices", "2", "--timeout", "60",
                        "--gateway-pid", try pid("gateway"),
                    ]
                ),
            ]
            for (name, arguments) in scenarios {
                let outcome = try await CLITests.switchboard(
                    ["bench", name, "--json"] + arguments, binDirectory: stack.binDirectory,
                    environment: ["SWITCHBOARD_JWT_SECRET": stack.jwtSecret])
                #expect(outcome.status == 0, "bench \(name) exited \(outcome.status): \(outcome.stderr.suffix(2000))")
                let results = try? JSONDecoder().decode(BenchResults.self, from: Data(outcome.stdout.utf8))
                #expect(results?.scenario == name, "bench \(name) printed no results: \(outcome.stdout.suffix(1000))")
                #expect(
                    !(results?.lines.isEmpty ?? true) || !(results?.latencies.isEmpty ?? true),
                    "bench \(name) reported nothing")
            }
        }
    }

    /// `reconnect` stops a gateway through a shell command while its clients stream; they come back
    /// on a second gateway of the same stack and catch up from their offsets.
    @Test func theReconnectScenarioRunsToTheEnd() async throws {
        try await ServiceProcesses.withStack { stack, ws, _ in
            let second = try stack.start("gateway")
            try await stack.waitUntilReady()
            let first = try #require(stack.process(named: "gateway")?.processIdentifier)
            let outcome = try await CLITests.switchboard(
                [
                    "bench", "reconnect", "--json", "--gateways", "\(ws),ws://127.0.0.1:\(second.httpPort)/ws",
                    "--brokers", TestEnvironment.kafkaBrokers, "--restart-command", "kill -TERM \(first)",
                    "--clients", "20", "--conversations", "4", "--rate", "5",
                ],
                binDirectory: stack.binDirectory, environment: ["SWITCHBOARD_JWT_SECRET": stack.jwtSecret])
            #expect(outcome.status == 0, "bench reconnect exited \(outcome.status): \(outcome.stderr.suffix(2000))")
            let results = try #require(
                try? JSONDecoder().decode(BenchResults.self, from: Data(outcome.stdout.utf8)),
                "bench reconnect printed no results: \(outcome.stdout.suffix(1000))")
            #expect(results.scenario == "reconnect")
            #expect(results.lines.contains { $0.contains("lost 0, duplicates 0") }, "\(results.lines)")
        }
    }
}
