import Foundation
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// Clients written from the seed documents alone (Python with ordinary SSE and WebSocket libraries,
/// in Tests/SeedClients/), run against the real stack. Each script checks what its seed promises and
/// prints a summary; a failed check exits 1 with the reason.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct SeedClientTests {
    /// Runs `script` with `arguments`; its exit code and the JSON of its last output line.
    static func run(_ script: String, _ arguments: [String]) async throws -> (code: Int32, summary: JSONValue?, output: String) {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("SeedClients").appendingPathComponent(script).path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", path] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        // Read while it runs, so a full pipe never blocks it.
        let data = try await Task.detached { try output.fileHandleForReading.readToEnd() ?? Data() }.value
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        let last = text.split(separator: "\n").last.map(String.init) ?? ""
        return (process.terminationStatus, FrontDoorTests.decode(last), text)
    }

    @Test func aChatCentreClientReadsTheSeedsEventsOverSSEAndWebSocket() async throws {
        try await ChatFlowTests.withStack(tokensPerSecond: 80) { _, url, authority in
            let port = URL(string: url)!.port!
            let token = try await authority.mint(user: "seed000-\(UUID().uuidString.prefix(6))")
            let result = try await Self.run("chat_centre.py", ["--http", "http://127.0.0.1:\(port)", "--token", token])
            #expect(result.code == 0, "\(result.output.suffix(3000))")
            let summary = try #require(result.summary, "\(result.output.suffix(3000))")
            #expect(summary["sse_events"]?.arrayValue?.contains("message_chunk") == true)
            #expect(summary["sse_events"]?.arrayValue?.contains("message_complete") == true)
            // Character offsets: 0, then the first chunk's length… the same over SSE and WebSocket.
            let positions = summary["sse_positions"]?.arrayValue?.compactMap(\.intValue) ?? []
            #expect(positions.first == 0 && positions.count > 2 && positions == positions.sorted())
            #expect(summary["ws_positions"] == summary["sse_positions"])
            #expect(positions.last.map { $0 <= ChatCentreDialect.length(summary["sse_message"]?.stringValue ?? "") } == true)
            #expect((summary["estimated_length"]?.intValue ?? 0) > 0)
            #expect(summary["initiated"]?["participants"]?.arrayValue?.isEmpty == false)
            #expect(summary["progress_last"]?["overallProgress"] == 100)
            let completedKeys = Set(summary["completed_keys"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            #expect(completedKeys.isSuperset(of: ["result", "participantContributions", "quality", "duration"]))
            let types = summary["ws_types"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(Set(["COLLABORATION_START", "COLLABORATION_INITIATED", "COLLABORATION_PROGRESS", "COLLABORATION_COMPLETE",
                         "COLLABORATION_COMPLETED"]).isSubset(of: types))
            let roleEvents = summary["role_events"]?.arrayValue?.compactMap(\.stringValue) ?? []
            #expect(["role_status_snapshot", "role_status_change", "collaboration_initiated"].allSatisfy(roleEvents.contains))
        }
    }

    @Test func aBluePlanPageOnAnotherOriginAndAnEventSourceStreamTheRun() async throws {
        try await ChatFlowTests.withStack(
            tokensPerSecond: 80, gatewayEnvironment: ["SWITCHBOARD_GATEWAY_MAX_CONNECTIONS_PER_USER": "2"]
        ) { _, url, authority in
            let port = URL(string: url)!.port!
            let token = try await authority.mint(user: "seed001-\(UUID().uuidString.prefix(6))")
            let result = try await Self.run(
                "blueplan.py", ["--http", "http://127.0.0.1:\(port)", "--token", token, "--connection-limit", "2"])
            #expect(result.code == 0, "\(result.output.suffix(3000))")
            let summary = try #require(result.summary, "\(result.output.suffix(3000))")
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
}
