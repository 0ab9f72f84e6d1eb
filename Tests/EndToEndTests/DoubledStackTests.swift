import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime
import SwitchboardTestSupport
import SwitchboardVoice
import Testing

/// Issue 17's "every service doubled, under test": two instances of each of the six services in one
/// stack, clients spread over both gateways, every partition of every consumer group owned once; then
/// one instance of each kind SIGKILLed in turn while conversations, a workflow run and a voice device go
/// on. Nothing is lost, nothing repeated, and the survivors own every partition once.
@Suite(.serialized, .timeLimit(.minutes(8)))
struct DoubledStackTests {
    static let kinds = ["gateway", "orchestrator", "agent-worker", "voice-worker", "workflow-runner", "notifier"]
    /// Sequential runs (five roles one after another), half begun on each gateway: long enough to be
    /// mid-run through the notifier, orchestrator and agent-worker kills.
    static let conversations = 20
    static let workflowNodes = 12
    /// The service each consumer group's members run in.
    static let groupKinds = [
        ConsumerGroups.orchestrator: "orchestrator", ConsumerGroups.agentWorker: "agent-worker",
        ConsumerGroups.notifier: "notifier",
        ConsumerGroups.history: "notifier", ConsumerGroups.voiceWorker: "voice-worker",
        ConsumerGroups.workflowRunner: "workflow-runner",
    ]

    /// The partitions ("topic[n]") each running instance holds, per group, replayed from its own
    /// "partitions assigned" and "partitions revoked" log lines (the broker is not asked: measuring lag
    /// never joins a group, and `switchboard status` does not name owners).
    static func owners(_ stack: ServiceProcesses) -> [String: [String: [String]]] {
        struct Line: Decodable {
            var message: String
            var group: String?
            var partitions: String?
            enum CodingKeys: String, CodingKey { case message, group = "kafka.group", partitions = "kafka.partitions" }
        }
        var owners: [String: [String: [String]]] = [:]
        for kind in Self.kinds {
            for running in stack.logs(of: kind) {
                var held: [String: Set<String>] = [:]
                for text in running.log.split(separator: "\n") where text.contains(#""partitions "#) {
                    guard let line = try? JSONDecoder().decode(Line.self, from: Data(text.utf8)),
                        let group = line.group,
                        let list = line.partitions,
                        let partitions = try? JSONDecoder().decode([String].self, from: Data(list.utf8))
                    else { continue }
                    if line.message == "partitions assigned" { held[group, default: []].formUnion(partitions) }
                    if line.message == "partitions revoked" { held[group, default: []].subtract(partitions) }
                }
                for (group, partitions) in held {
                    for partition in partitions {
                        owners[group, default: [:]][partition, default: []].append("\(kind)-\(running.httpPort)")
                    }
                }
            }
        }
        return owners
    }

    /// What is wrong with the ownership of the partitions `report` lists: a partition with no owner or
    /// two, and (with `spread`) a running instance of a group's kind that owns none of its partitions.
    static func ownershipProblems(_ report: StatusReport, _ stack: ServiceProcesses, spread: Bool) -> [String] {
        let owners = Self.owners(stack)
        return report.groups.flatMap { group -> [String] in
            let held = owners[group.group] ?? [:]
            let expected = Set(group.partitions.map { "\($0.topic)[\($0.partition)]" })
            var problems = expected.sorted().compactMap { partition -> String? in
                held[partition]?.count == 1 ? nil : "\(group.group) \(partition) owned by \(held[partition] ?? [])"
            }
            problems += Set(held.keys).subtracting(expected).sorted().map {
                "\(group.group) \($0) is not one of its partitions"
            }
            if spread, let kind = Self.groupKinds[group.group] {
                let owning = Set(held.values.joined())
                for running in stack.logs(of: kind) where !owning.contains("\(kind)-\(running.httpPort)") {
                    problems.append("\(group.group): \(kind)-\(running.httpPort) owns no partition")
                }
            }
            return problems
        }
    }

    /// `switchboard status --json` over the `instance`th running instance of each kind.
    static func status(_ stack: ServiceProcesses, instance: Int) async throws -> StatusReport {
        let outcome = try await CLITests.switchboard(
            ["status", "--json", "--brokers", TestEnvironment.kafkaBrokers]
                + CLITests.portFlags(stack, instance: instance),
            binDirectory: stack.binDirectory)
        return try JSONDecoder().decode(StatusReport.self, from: Data(outcome.stdout.utf8))
    }

    /// `switchboard status` finds every running instance ready, and every partition of every group has
    /// exactly one owner among them (a rebalance may still be settling: waited for). Returns the
    /// number of partitions checked.
    @discardableResult
    static func expectEveryPartitionOwnedOnce(
        _ stack: ServiceProcesses, spread: Bool, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> Int {
        let instances = Self.kinds.map { stack.logs(of: $0).count }.max() ?? 0
        var reports: [StatusReport] = []
        var problems: [String] = []
        _ = await eventually(timeout: .seconds(45), every: .milliseconds(500)) {
            reports = []
            for instance in 0..<instances {
                do { reports.append(try await Self.status(stack, instance: instance)) } catch {
                    problems = ["switchboard status did not answer in JSON: \(error)"]
                    return false
                }
            }
            problems = reports.compactMap(\.problem)
            if problems.isEmpty, let report = reports.first {
                problems = Self.ownershipProblems(report, stack, spread: spread)
            }
            return problems.isEmpty
        }
        #expect(problems.isEmpty, "\(problems)", sourceLocation: sourceLocation)
        #expect(reports.first?.groups.count == ConsumerGroups.subscriptions.count, sourceLocation: sourceLocation)
        return reports.first?.groups.map(\.partitions.count).reduce(0, +) ?? 0
    }

    /// `sb_voice_turns_total` of each running voice-worker, by HTTP port: which one spoke a turn.
    static func voiceTurns(_ stack: ServiceProcesses) async throws -> [Int: Double] {
        var turns: [Int: Double] = [:]
        for worker in stack.logs(of: "voice-worker") {
            let (data, _) = try await URLSession.shared.data(
                from: URL(string: "http://127.0.0.1:\(worker.adminPort)/metrics")!)
            let line = String(decoding: data, as: UTF8.self).split(separator: "\n").first {
                $0.hasPrefix("sb_voice_turns_total")
            }
            turns[worker.httpPort] = line?.split(separator: " ").last.flatMap { Double($0) } ?? 0
        }
        return turns
    }

    @Test func oneInstanceOfEachKindKilledInTurnLosesAndRepeatsNothing() async throws {
        try await ServiceProcesses.withStack(tokensPerSecond: 10) { stack, doomed, authority in
            let began = ContinuousClock.now
            for kind in Self.kinds {
                // The second agent-worker streams as slowly as the first, so runs are mid-answer at the kills.
                let agent = ["SWITCHBOARD_AGENT_TOKEN_RATE": "10", "SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS": "20"]
                try stack.start(kind, environment: kind == "agent-worker" ? agent : [:])
            }
            try await stack.waitUntilReady()
            let partitions = try await Self.expectEveryPartitionOwnedOnce(stack, spread: true)
            let deadLetters = try await DependencyOutageTests.deadLetterCounts(stack.binDirectory)
            // The first gateway is killed; the second serves everyone after that.
            let gatewayPorts = stack.logs(of: "gateway").map(\.httpPort)
            let survivor = "ws://127.0.0.1:\(gatewayPorts[1])/ws"
            #expect(doomed == "ws://127.0.0.1:\(gatewayPorts[0])/ws")

            // 1. A workflow run, its client on the surviving gateway throughout: the runner that owns the
            //    run is killed when its third node starts.
            let runnerKilled = Locked(false)
            let workflowToken = try await authority.mint(user: "doubled-workflow")
            async let workflow = WorkflowClient.withConnection(
                url: WorkflowFlowTests.wsURL(survivor, session: "doubled-\(UUID().uuidString.prefix(6))"),
                token: workflowToken
            ) { client -> [JSONValue] in
                _ = await client.frames.first("connection_established")
                let runID = try await WorkflowFlowTests.execute(
                    client, WorkflowFlowTests.chain(Self.workflowNodes, ms: 700))
                var frames: [JSONValue] = []
                while let received = await client.frames.next(within: .seconds(45)) {
                    frames.append(received.frame)
                    if WorkflowFlowTests.isNode(received.frame, "d3", "running"), !runnerKilled.withLock({ $0 }) {
                        let owner = try #require(
                            stack.logs(of: "workflow-runner").first { $0.log.contains(runID) },
                            "no runner logged the run")
                        stack.kill(httpPort: owner.httpPort)
                        runnerKilled.withLock { $0 = true }
                    }
                    if WorkflowFlowTests.isOutcome(received.frame) { break }
                }
                return frames
            }
            #expect(
                await eventually(timeout: .seconds(30)) { runnerKilled.withLock { $0 } },
                "the run never reached its third node")

            // 2. A device on the first gateway, answered there, still connected when that gateway dies;
            //    conversations begun on both gateways, mid-run.
            let (deviceID, clientID) = (VoiceFlowTests.deviceID(), UUID().uuidString)
            let deviceOwner = try await authority.mint(user: "doubled-device-\(UUID().uuidString.prefix(6))")
            _ = try await DeviceActivationFlowTests.bind(
                HistoryFlowTests.base(doomed), deviceID: deviceID, clientID: clientID, user: deviceOwner)
            let (firstURL, firstToken, _) = try await VoiceFlowTests.ota(
                HistoryFlowTests.base(doomed), deviceID: deviceID, clientID: clientID)
            let firstAnswer = Locked<[DeviceSimulator.Received]>([])
            let firstConnection = Task {
                try await DeviceSimulator.connect(
                    url: firstURL, token: firstToken, deviceID: deviceID, clientID: clientID
                ) { device -> Void in
                    let session = try await VoiceFlowTests.hello(device)
                    let heard = await ChaosTests.ask(device, session: session)
                    firstAnswer.withLock { $0 = heard }
                    // Connected until its gateway dies.
                    _ = await device.collect(idle: .seconds(120)) { _ in false }
                }
            }
            async let beganOnDoomed = ChaosTests.start(
                Self.conversations / 2, label: "doubled-a", pattern: "sequential", url: doomed, authority: authority
            ) { ChaosTests.chunks($0) >= 3 }
            async let beganOnSurvivor = ChaosTests.start(
                Self.conversations / 2, label: "doubled-b", pattern: "sequential", url: survivor, authority: authority
            ) { ChaosTests.chunks($0) >= 3 }
            let streaming = try await beganOnDoomed + beganOnSurvivor
            #expect(
                await eventually(timeout: .seconds(60)) { firstAnswer.withLock { $0.last?.message?.ttsState == .stop } }
            )

            // 3. The first gateway dies: the device comes back through the other one (OTA there hands out
            //    its own address) and keeps talking while a notifier, an orchestrator and an agent-worker
            //    die in turn under the runs.
            stack.kill(httpPort: gatewayPorts[0])
            _ = try? await firstConnection.value
            let (secondURL, secondToken, _) = try await VoiceFlowTests.ota(
                HistoryFlowTests.base(survivor), deviceID: deviceID, clientID: clientID)
            #expect(
                secondURL == "ws://127.0.0.1:\(gatewayPorts[1])/xiaozhi/v1/",
                "the device's route did not move: \(secondURL)")
            let turnsBefore = try await Self.voiceTurns(stack)
            let secondAnswer = Locked<[DeviceSimulator.Received]?>(nil)
            let voiceWorkerKilled = Locked(false)
            let secondConnection = Task {
                try await DeviceSimulator.connect(
                    url: secondURL, token: secondToken, deviceID: deviceID, clientID: clientID
                ) { device -> (online: Bool, thirdAnswer: [DeviceSimulator.Received]) in
                    let session = try await VoiceFlowTests.hello(device)
                    let devices = try await DeviceActivationFlowTests.call(
                        "GET", "\(HistoryFlowTests.base(survivor))/api/v1/devices",
                        headers: ["Authorization": "Bearer \(deviceOwner)"])
                    let online = (devices.json["devices"] as? [[String: Any]])?.first?["online"] as? Bool ?? false
                    let heard = await ChaosTests.ask(
                        device, session: session, "tell me about the rain in three sentences")
                    secondAnswer.withLock { $0 = heard }
                    _ = await eventually(timeout: .seconds(120), every: .milliseconds(100)) {
                        voiceWorkerKilled.withLock { $0 }
                    }
                    let third = await ChaosTests.ask(
                        device, session: session, "tell me about the wind in three sentences")
                    return (online, third)
                }
            }
            for kind in ["notifier", "orchestrator", "agent-worker"] {
                stack.kill(httpPort: try ChaosTests.httpPort(of: kind, in: stack))
                try await Task.sleep(for: .seconds(2))
            }

            // 4. The voice-worker that spoke the device's answer dies; the device's next question is
            //    answered by the other one, which takes the session over from its route.
            #expect(await eventually(timeout: .seconds(90)) { secondAnswer.withLock { $0 != nil } })
            let turnsAfter = try await Self.voiceTurns(stack)
            let speaker = turnsAfter.first { $0.value > turnsBefore[$0.key, default: 0] }?.key
            #expect(speaker != nil, "no voice-worker counted the device's turn: \(turnsBefore) → \(turnsAfter)")
            stack.kill(httpPort: try speaker ?? ChaosTests.httpPort(of: "voice-worker", in: stack))
            voiceWorkerKilled.withLock { $0 = true }

            // Every run ends once, resumed by offset on the surviving gateway.
            let resumed = try await ChaosTests.resume(streaming, url: survivor) {
                $0.type == FrameType.collaborationComplete
            }
            for conversation in resumed { ChaosTests.expectOneSequentialRun(conversation) }
            // The workflow: every node completed once, one unbroken stream, one end.
            let runFrames = try #require(try await workflow.result)
            #expect(runFrames.last?["type"]?.stringValue == "workflow_completed", "\(runFrames.suffix(3))")
            for index in 1...Self.workflowNodes {
                #expect(
                    runFrames.filter { WorkflowFlowTests.isNode($0, "d\(index)", "completed") }.count == 1, "d\(index)")
            }
            let runOffsets = runFrames.compactMap { $0["offset"]?.intValue }
            #expect(
                !runOffsets.isEmpty && runOffsets == Array(runOffsets[0]..<(runOffsets[0] + runOffsets.count)),
                "\(runOffsets)")
            // The device: one whole answer on each gateway and after its voice-worker died.
            ChaosTests.expectOneSpokenAnswer(firstAnswer.withLock { $0 })
            let (second, _) = try await secondConnection.value
            let (online, thirdAnswer) = try #require(second)
            #expect(online, "the device reconnected to the other gateway is not shown online")
            ChaosTests.expectOneSpokenAnswer(secondAnswer.withLock { $0 } ?? [])
            ChaosTests.expectOneSpokenAnswer(thirdAnswer)

            // The survivors own every partition once, have consumed everything, dead-lettered nothing.
            try await Self.expectEveryPartitionOwnedOnce(stack, spread: false)
            // Everything on the bus by now gets consumed (what arrives meanwhile, a status change or a
            // heartbeat, is not waited for: a live stack is rarely at lag 0 at the instant it is asked).
            let produced = try await Self.status(stack, instance: 0).groups.flatMap { group in
                group.partitions.map { (key: "\(group.group) \($0.topic)[\($0.partition)]", end: $0.highWatermark) }
            }
            var unconsumed: [String] = []
            _ = await eventually(timeout: .seconds(30), every: .milliseconds(500)) {
                guard let groups = try? await Self.status(stack, instance: 0).groups else { return false }
                var committed: [String: Int64] = [:]
                for group in groups {
                    for partition in group.partitions {
                        committed["\(group.group) \(partition.topic)[\(partition.partition)]"] =
                            partition.committed ?? partition.lowWatermark
                    }
                }
                unconsumed = produced.compactMap { partition in
                    let at = committed[partition.key] ?? -1
                    return at >= partition.end ? nil : "\(partition.key) committed \(at) of \(partition.end)"
                }
                return unconsumed.isEmpty
            }
            #expect(unconsumed.isEmpty, "messages left unconsumed after the kills: \(unconsumed)")
            #expect(try await DependencyOutageTests.deadLetterCounts(stack.binDirectory) == deadLetters)
            try await ChaosTests.expectAFreshConversationCompletes(url: survivor, authority: authority)
            let events = resumed.map(\.positioned.count).reduce(0, +)
            print(
                "doubled: 12 services, \(partitions) partitions of \(ConsumerGroups.subscriptions.count) groups owned once; one of each kind SIGKILLed;"
                    + " \(resumed.count) conversations (\(events) channel events), a workflow run of \(Self.workflowNodes) nodes"
                    + " (\(runOffsets.count) events), 3 spoken answers over 2 gateways checked in \((ContinuousClock.now - began).components.seconds) s"
            )
        }
    }
}
