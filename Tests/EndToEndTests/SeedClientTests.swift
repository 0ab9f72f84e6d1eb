import Foundation
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// Clients written from the seed documents alone (`Tests/SeedClients/*.py`, Python with `websockets`,
/// no Switchboard code), against the real services: what a user of seed 003 or 002 would run, changed
/// only by the token. Each script prints `ok <check>` per check and exits non-zero at the first failure.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct SeedClientTests {
    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("SeedClients")

    /// Runs one script to its end; its exit status and everything it printed.
    static func run(_ script: String, environment: [String: String]) async throws -> (status: Int32, output: String) {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("seed-client-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: output) }
        let log = try FileHandle(forWritingTo: output)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", scripts.appendingPathComponent(script).path]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = log
        process.standardError = log
        let status = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int32, any Error>) in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { continuation.resume(throwing: error) }
        }
        try log.close()
        return (status, (try? String(contentsOf: output, encoding: .utf8)) ?? "")
    }

    static func checks(in output: String) -> [String] {
        output.split(separator: "\n").filter { $0.hasPrefix("ok ") }.map { String($0.dropFirst(3)) }
    }

    @Test func aBlueVClientWrittenFromSeed003() async throws {
        try await ChatFlowTests.withStack { _, url, authority in
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
        try await ChatFlowTests.withStack { _, url, authority in
            let http = url.replacingOccurrences(of: "ws://", with: "http://").replacingOccurrences(of: "/ws", with: "")
            let (status, output) = try await Self.run(
                "bisheng_client.py", environment: ["SB_HTTP": http, "SB_TOKEN": try await authority.mint(user: "bisheng-user")])
            #expect(status == 0, "\(output)")
            let checks = Self.checks(in: output)
            #expect(checks.count == 10, "\(output)")
            #expect(checks.contains { $0.hasPrefix("reconnecting replays what was missed") })
        }
    }
}
