import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardTestSupport
import Testing

/// The built `switchboard` binary run as a process, as an operator or a script runs it.
@Suite(.serialized, .timeLimit(.minutes(4))) struct CLITests {
    struct Outcome {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `switchboard arguments…` from `binDirectory` and waits for it to exit.
    static func switchboard(_ arguments: [String], binDirectory: String, environment: [String: String] = [:])
        async throws -> Outcome
    {
        let folder = NSTemporaryDirectory() + "switchboard-cli-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (outPath, errPath) = ("\(folder)/stdout", "\(folder)/stderr")
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "\(binDirectory)/switchboard")
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            process.terminationHandler = { _ in continuation.resume() }
            do { try process.run() } catch {
                process.terminationHandler = nil
                continuation.resume()
            }
        }
        return Outcome(
            status: process.isRunning ? -1 : process.terminationStatus,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    /// `--port` and `--admin-port` flags for every service of a test stack: its `instance`th running
    /// instance of each kind (the last one where it runs fewer).
    static func portFlags(_ stack: ServiceProcesses, instance: Int = 0) -> [String] {
        ["gateway", "orchestrator", "agent-worker", "voice-worker", "workflow-runner", "notifier"].flatMap {
            name -> [String] in
            let running = stack.logs(of: name)
            guard !running.isEmpty else { return [] }
            let chosen = running[min(instance, running.count - 1)]
            return ["--port", "\(name)=\(chosen.httpPort)", "--admin-port", "\(name)=\(chosen.adminPort)"]
        }
    }

    @Test func statusSeesTheStackSendStreamsAnAnswerAndADownServiceFailsStatus() async throws {
        try await ServiceProcesses.withStack { stack, url, _ in
            let bin = stack.binDirectory
            let common = ["--brokers", TestEnvironment.kafkaBrokers] + Self.portFlags(stack)

            // status --json: every service ready, every group with a numeric lag.
            let status = try await Self.switchboard(["status", "--json"] + common, binDirectory: bin)
            #expect(status.status == 0, "stderr: \(status.stderr)")
            let report = try JSONDecoder().decode(StatusReport.self, from: Data(status.stdout.utf8))
            #expect(report.ok)
            #expect(
                report.services.map(\.service) == [
                    "gateway", "orchestrator", "agent-worker", "voice-worker", "workflow-runner", "notifier",
                ])
            #expect(report.services.allSatisfy { $0.healthy && $0.ready })
            #expect(report.kafka.error == nil)
            #expect(Set(report.groups.map(\.group)) == Set(ConsumerGroups.subscriptions.map(\.group)))
            #expect(report.groups.allSatisfy { $0.lag >= 0 && !$0.partitions.isEmpty })
            // The raw document has numbers where scripts read them.
            let raw = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
            let groups = try #require(raw["groups"] as? [[String: Any]])
            #expect(groups.allSatisfy { $0["lag"] is NSNumber })

            // send --json: one frame per line, ending with the run's COLLABORATION_COMPLETE.
            let env = ["SWITCHBOARD_JWT_SECRET": stack.jwtSecret]
            let sent = try await Self.switchboard(
                ["send", "--json", "--gateway", url, "--pattern", "direct", "hello", "from", "the", "cli"],
                binDirectory: bin,
                environment: env)
            #expect(sent.status == 0, "stderr: \(sent.stderr)")
            let frames = try sent.stdout.split(separator: "\n").map {
                try JSONDecoder().decode(ServerFrame.self, from: Data($0.utf8))
            }
            #expect(frames.contains { $0.type == FrameType.messageStreamChunk })
            let last = try #require(frames.last)
            #expect(last.type == FrameType.collaborationComplete)
            #expect(last.data["result"]?["status"]?.stringValue == "completed")
            let answer = try #require(last.data["result"]?["answer"]?.stringValue)
            #expect(answer.contains("hello from the cli"))

            // send without --json: the answer alone on stdout.
            let human = try await Self.switchboard(
                ["send", "--gateway", url, "--pattern", "direct", "plain", "words"], binDirectory: bin, environment: env
            )
            #expect(human.status == 0, "stderr: \(human.stderr)")
            #expect(human.stdout.contains("plain words") && !human.stdout.contains("{"))
            #expect(human.stderr.contains("completed"))

            // A service that died: status exits 1 and names it.
            let notifier = try #require(stack.logs(of: "notifier").first)
            stack.kill(httpPort: notifier.httpPort)
            let down = try await Self.switchboard(["status"] + common, binDirectory: bin)
            #expect(down.status == 1)
            #expect(down.stderr.contains("notifier is down"), "stderr: \(down.stderr)")
            #expect(down.stdout.contains("GROUP"), "the lag table is still shown: \(down.stdout)")
        }
    }

    @Test func statusWithNothingRunningAndBadInputFailClearly() async throws {
        let bin = try ServiceProcesses().binDirectory
        let ports = ["gateway", "orchestrator", "agent-worker", "voice-worker", "workflow-runner", "notifier"].flatMap {
            ["--port", "\($0)=\(ServiceProcesses.freePort())"]
        }
        let down = try await Self.switchboard(
            ["status", "--json", "--timeout", "1", "--brokers", "127.0.0.1:\(ServiceProcesses.freePort())"] + ports,
            binDirectory: bin)
        #expect(down.status == 1)
        let report = try JSONDecoder().decode(StatusReport.self, from: Data(down.stdout.utf8))
        #expect(!report.ok && report.services.allSatisfy { !$0.healthy && $0.error == "connection refused" })
        #expect(report.kafka.error != nil)
        #expect(down.stderr.contains("gateway is down (connection refused)"))

        let badPort = try await Self.switchboard(["status", "--port", "gateway=http"], binDirectory: bin)
        #expect(badPort.status == 64 && badPort.stderr.contains("is not a port"))
        let empty = try await Self.switchboard(["send", " "], binDirectory: bin)
        #expect(empty.status == 64 && empty.stderr.contains("the message is empty"))
    }
}
