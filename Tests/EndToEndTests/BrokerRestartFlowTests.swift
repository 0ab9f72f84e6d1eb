import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardTestSupport
import Testing

/// The stack through a Kafka broker restart, without restarting a service.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct BrokerRestartFlowTests {
    /// The broker SIGKILLed and started again under the running stack (a Tansu of the test's own, which
    /// comes back empty: what was on the bus is gone, as it would not be with Apache Kafka's log on disk).
    /// No service is restarted: every one is ready again (topics put back, groups joined again, producers
    /// renewed), every user's next message is answered, a workflow runs and a device is answered.
    @Test func aBrokerRestartNeedsNoServiceRestart() async throws {
        let broker = try await TestBroker()
        defer { broker.stop() }
        try await ServiceProcesses.withStack(
            tokensPerSecond: 100,
            everyService: ["SWITCHBOARD_KAFKA_BROKERS": broker.address]
        ) { stack, url, authority in
            let first = try await ChaosTests.start(
                ChaosTests.conversations, label: "chaos-broker", url: url, authority: authority
            ) { frames in
                frames.contains { $0.type == FrameType.messageStreamEnd }
            }
            try await broker.restart()
            let restartedAt = ContinuousClock.now
            // Each service notices within seconds (a topic check every 5 s, the group's session timeout).
            try await Task.sleep(for: .seconds(6))
            try await stack.waitUntilReady(timeout: .seconds(90))
            let ready = ContinuousClock.now - restartedAt

            let second = try await withThrowingTaskGroup(of: (Int, [ServerFrame], String).self) { group in
                for conversation in first {
                    group.addTask {
                        let (refused, frames) = try await Self.sendUntilAccepted(
                            url: url, token: conversation.token,
                            RecoveryTests.send(conversation.id, "are you still there after the broker"))
                        return (refused, frames, conversation.id)
                    }
                }
                var all: [(Int, [ServerFrame], String)] = []
                for try await answered in group { all.append(answered) }
                return all
            }
            let unanswered = second.filter { $0.1.last?.type != FrameType.messageStreamEnd }
            #expect(
                unanswered.isEmpty,
                "unanswered after the restart: \(unanswered.map { "\($0.2): \($0.1.map(\.type))" })")
            let workflow = try await WorkflowThroughFault.start(url: url, authority: authority)
            workflow.faultBegan()
            let device = ChaosTests.speakingDevice(url: url, authority: authority)
            try await workflow.expectCompletedOnce(fault: "broker restarted")
            ChaosTests.expectOneSpokenAnswer(try await device.value)
            // Nothing went to a dead-letter topic on the restarted broker.
            let deadLetters = try await DependencyOutageTests.deadLetterCounts(
                stack.binDirectory, brokers: broker.address)
            #expect(deadLetters.values.allSatisfy { $0 == 0 }, "dead-lettered after the restart: \(deadLetters)")
            // Runs whose last result was on the bus when it died: abandoned for the next message (LostResults).
            let metrics = try await MisbehavingClientTests.text(
                "http://127.0.0.1:\(try #require(stack.adminPort(of: "orchestrator")))/metrics")
            let lostRuns = MisbehavingClientTests.value(of: "sb_orchestrator_runs_results_lost_total", in: metrics) ?? 0
            print(
                "chaos: broker SIGKILLed and restarted empty: every service ready again after \(ready.components.seconds) s without a restart, \(second.count - unanswered.count) conversations answered again (\(Int(lostRuns)) of them after a run whose result the broker lost), \(second.map(\.0).reduce(0, +)) sends refused while producers renewed"
            )
        }
    }

    /// Sends `command` as a client would: a refusal that says "retry" (`UNAVAILABLE`) is sent again,
    /// with the same id, after a second. Returns how many were refused, and the frames of the accepted one
    /// up to its reply's end.
    static func sendUntilAccepted(url: String, token: String, _ command: ClientCommand) async throws -> (
        Int, [ServerFrame]
    ) {
        let deadline = ContinuousClock.now + .seconds(90)
        var refused = 0
        while true {
            let (frames, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                client.send(command)
                return await client.frames.collect(idle: .seconds(60)) {
                    $0.type == FrameType.messageStreamEnd || ($0.correlationId == command.id && $0.status == .error)
                }
            }
            let received = frames ?? []
            let error = received.first { $0.correlationId == command.id && $0.status == .error }
            guard let error, error.error?.code == ErrorCode.unavailable.rawValue, ContinuousClock.now < deadline else {
                return (refused, received)
            }
            refused += 1
            try await Task.sleep(for: .seconds(1))
        }
    }

}
