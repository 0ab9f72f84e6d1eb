import Foundation
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// Clients written from the seed documents alone (`Tests/SeedClients/*.py`, Python with ordinary SSE and
/// WebSocket libraries, no Switchboard code), against the real services: what a user of a seed would
/// run, changed only by the token. The seed 000/001 scripts print a JSON summary as their last line; the
/// seed 002/003 scripts print `ok <check>` per check; all exit non-zero at the first failure.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct SeedClientTests {
    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("SeedClients")

    /// Runs one script to its end; its exit status and everything it printed.
    static func run(
        _ script: String, arguments: [String] = [], environment: [String: String] = [:]
    ) async throws -> (status: Int32, output: String) {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent(
            "seed-client-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let log = try FileHandle(forWritingTo: output)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", scripts.appendingPathComponent(script).path] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = log
        process.standardError = log
        // A termination handler, not waitUntilExit (which spins a run loop nobody serves here).
        let status = try await withCheckedThrowingContinuation {
            (continuation: CheckedContinuation<Int32, any Error>) in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
        try log.close()
        return (status, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
    }

    /// The JSON summary a script printed last.
    static func summary(in output: String) -> JSONValue? {
        FrontDoorTests.decode(output.split(separator: "\n").last.map(String.init) ?? "")
    }

    static func checks(in output: String) -> [String] {
        output.split(separator: "\n").filter { $0.hasPrefix("ok ") }.map { String($0.dropFirst(3)) }
    }

    @Test func aChatCentreClientReadsTheSeedsEventsOverSSEAndWebSocket() async throws {
        try await ServiceProcesses.withStack(tokensPerSecond: 80) { _, url, authority in
            let port = URL(string: url)!.port!
            let token = try await authority.mint(user: "seed000-\(UUID().uuidString.prefix(6))")
            let result = try await Self.run(
                "chat_centre.py", arguments: ["--http", "http://127.0.0.1:\(port)", "--token", token])
            #expect(result.status == 0, "\(result.output.suffix(3000))")
            let summary = try #require(Self.summary(in: result.output), "\(result.output.suffix(3000))")
            #expect(summary["sse_events"]?.arrayValue?.contains("message_chunk") == true)
            #expect(summary["sse_events"]?.arrayValue?.contains("message_complete") == true)
            // Character offsets: 0, then the first chunk's length… the same over SSE and WebSocket.
            let positions = summary["sse_positions"]?.arrayValue?.compactMap(\.intValue) ?? []
            #expect(positions.first == 0 && positions.count > 2 && positions == positions.sorted())
            #expect(summary["ws_positions"] == summary["sse_positions"])
            #expect(
                positions.last.map { $0 <= ChatCentreDialect.length(summary["sse_message"]?.stringValue ?? "") } == true
            )
            #expect((summary["estimated_length"]?.intValue ?? 0) > 0)
            #expect(summary["initiated"]?["participants"]?.arrayValue?.isEmpty == false)
            #expect(summary["progress_last"]?["overallProgress"] == 100)
            let completedKeys = Set(summary["completed_keys"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            #expect(completedKeys.isSuperset(of: ["result", "participantContributions", "quality", "duration"]))
            let types = summary["ws_types"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(
                Set([
                    "COLLABORATION_START", "COLLABORATION_INITIATED", "COLLABORATION_PROGRESS",
                    "COLLABORATION_COMPLETE",
                    "COLLABORATION_COMPLETED",
                ]).isSubset(of: types))
            let roleEvents = summary["role_events"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(
                ["role_status_snapshot", "role_status_change", "collaboration_initiated"].allSatisfy(
                    roleEvents.contains))
        }
    }

    @Test func aBluePlanPageOnAnotherOriginAndAnEventSourceStreamTheRun() async throws {
        try await ServiceProcesses.withStack(
            tokensPerSecond: 80, gatewayEnvironment: ["SWITCHBOARD_GATEWAY_MAX_CONNECTIONS_PER_USER": "2"]
        ) { _, url, authority in
            let port = URL(string: url)!.port!
            let token = try await authority.mint(user: "seed001-\(UUID().uuidString.prefix(6))")
            let result = try await Self.run(
                "blueplan.py",
                arguments: ["--http", "http://127.0.0.1:\(port)", "--token", token, "--connection-limit", "2"])
            #expect(result.status == 0, "\(result.output.suffix(3000))")
            let summary = try #require(Self.summary(in: result.output), "\(result.output.suffix(3000))")
            #expect(summary["nova_agents"] == ["Alex", "Catherine", "David", "Emma", "Kulu", "Mike"])
            #expect(summary["nova_last"] == "completed")
            #expect(summary["loomi_agents"]?.arrayValue?.contains("Catherine") == true)
            let all = summary["loomi_events"]?.intValue ?? 0
            #expect(all > 4 && summary["resumed_events"]?.intValue == all - all / 2)
            #expect(summary["after_end_status"] == 204)
            #expect(summary["error_payload_keys"] == ["context", "error", "error_type", "retry_count"])
            #expect(summary["over_limit_status"] == 429)
            #expect(summary["preflight_allow_headers"]?.stringValue?.lowercased().contains("authorization") == true)
        }
    }

    @Test func aBlueVClientWrittenFromSeed003() async throws {
        try await ServiceProcesses.withStack { _, url, authority in
            let http = url.replacingOccurrences(of: "ws://", with: "http://").replacingOccurrences(of: "/ws", with: "")
            let (status, output) = try await Self.run(
                "bluev_client.py",
                environment: [
                    "SB_HTTP": http, "SB_TOKEN": try await authority.mint(user: "bluev-user"),
                    "SB_ADMIN_TOKEN": try await authority.mint(user: "bluev-ops", roles: ["admin"]),
                ])
            #expect(status == 0, "\(output)")
            let checks = Self.checks(in: output)
            #expect(checks.count == 16, "\(output)")
            #expect(checks.contains("a second live run with the same id is refused with workflow_execution_error"))
            #expect(checks.contains("POST /api/broadcast answers broadcasted; the socket receives the JSON as it is"))
        }
    }

    @Test func aBishengClientWrittenFromSeed002() async throws {
        try await TestEnvironment.requirePostgres()
        try await ServiceProcesses.withStack { _, url, authority in
            let http = url.replacingOccurrences(of: "ws://", with: "http://").replacingOccurrences(of: "/ws", with: "")
            let (status, output) = try await Self.run(
                "bisheng_client.py",
                environment: ["SB_HTTP": http, "SB_TOKEN": try await authority.mint(user: "bisheng-user")])
            #expect(status == 0, "\(output)")
            let checks = Self.checks(in: output)
            #expect(checks.count == 10, "\(output)")
            #expect(checks.contains { $0.hasPrefix("reconnecting replays what was missed") })
        }
    }

    /// A xiaozhi device written from the device protocol (`xiaozhi_device.py`): activation, hello with
    /// `features.mcp`, MCP initialize and two tools/list pages, then turns whose answers call the
    /// device's own tools over `tools/call` and speak their results; then its tools change
    /// (`notifications/tools/list_changed`) and the new ones are called.
    @Test func aXiaozhiDeviceCallsItsOwnToolsOverMCP() async throws {
        try await VoiceFlowTests.withVoiceStack { stack in
            let user = try await stack.authority.mint(user: "xiaozhi-\(UUID().uuidString.prefix(6))")
            let (status, output) = try await Self.run(
                "xiaozhi_device.py", environment: ["SB_HTTP": stack.httpBase, "SB_USER_TOKEN": user])
            #expect(status == 0, "\(output)")
            let checks = Self.checks(in: output)
            #expect(checks.count == 10, "\(output)")
            #expect(checks.contains("a turn naming a tool calls it over MCP and speaks its result"))
            #expect(checks.contains("the changed tools are the ones called"))
            let metrics = try await VoiceFlowTests.metrics(stack, service: "agent-worker")
            #expect(metrics.contains("sb_agent_device_tool_calls_total"))
        }
    }

    /// The same device, its turns answered by an OpenAI-compatible model (`FakeOpenAI`'s `tools`
    /// scenario, on a real socket): the model gets the device's tools as functions, streams
    /// `tool_calls`, the agent-worker calls the device, and the model's second answer, built from the
    /// device's result, is what the device speaks.
    @Test func anOpenAIModelCallsAXiaozhiDevicesTools() async throws {
        let fake = FakeOpenAI()
        try await fake.withServer { port in
            let model = "http://127.0.0.1:\(port)/tools/v1"
            let teamPath = try CollaborationFlowTests.teamFile(providers: [
                "Alex": ["kind": "openai", "baseURL": model, "model": "fake-tools"]
            ])
            defer { try? FileManager.default.removeItem(atPath: teamPath) }
            try await VoiceFlowTests.withVoiceStack(
                orchestratorEnvironment: ["SWITCHBOARD_TEAM_FILE": teamPath],
                agentEnvironment: ["SWITCHBOARD_AGENT_PROVIDERS": model]
            ) { stack in
                let user = try await stack.authority.mint(user: "xiaozhi-ai-\(UUID().uuidString.prefix(6))")
                let (status, output) = try await Self.run(
                    "xiaozhi_device.py",
                    environment: ["SB_HTTP": stack.httpBase, "SB_USER_TOKEN": user, "SB_MODEL": "openai"])
                #expect(status == 0, "\(output)")
                #expect(Self.checks(in: output).count == 10, "\(output)")
                let bodies = try fake.bodies.withLock { $0 }.map {
                    try JSONDecoder().decode(JSONValue.self, from: Data($0.utf8))
                }
                // Two requests for each of the three turns with a call, one for the turn without.
                #expect(bodies.count == 7)
                let offered = bodies.map {
                    $0["tools"]?.arrayValue?.compactMap { $0["function"]?["name"]?.stringValue } ?? []
                }
                #expect(offered.first == ["self_light_turn_on", "self_audio_speaker_set_volume"])
                #expect(offered.last == ["self_fan_turn_on", "self_audio_speaker_set_volume"])
                // The device's results went back to the model as `tool` messages answering its calls.
                let toolMessages = bodies.flatMap { $0["messages"]?.arrayValue ?? [] }.filter { $0["role"] == "tool" }
                #expect(
                    toolMessages.compactMap { $0["content"]?.stringValue }
                        == ["the light is on", "volume is now 30", "the fan is spinning"])
                let metrics = try await VoiceFlowTests.metrics(stack, service: "agent-worker")
                #expect(
                    metrics.split(separator: "\n").contains {
                        $0.hasPrefix("sb_agent_device_tool_calls_total") && $0.hasSuffix(" 3")
                    })
            }
        }
    }
}
