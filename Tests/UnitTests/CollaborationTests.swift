import ArgumentParser
import Foundation
import SwitchboardContracts
import Testing

@testable import Orchestrator

@Suite struct RoleStateMachineTests {
    static let allowedPairs: [(RoleStatus, RoleStatus)] = [
        (.idle, .analyzing), (.idle, .thinking),
        (.analyzing, .thinking), (.analyzing, .collaborating), (.analyzing, .error),
        (.thinking, .responding), (.thinking, .collaborating), (.thinking, .error),
        (.collaborating, .thinking), (.collaborating, .responding), (.collaborating, .error),
        (.responding, .idle), (.responding, .error),
        (.error, .idle), (.error, .thinking),
    ]

    @Test(arguments: allowedPairs)
    func seedTransitionsAreAllowed(_ from: RoleStatus, _ to: RoleStatus) {
        var machine = RoleStateMachine(status: from)
        #expect(machine.transition(to: to) == .emit(from: from, to: to))
        #expect(machine.status == to)
    }

    @Test func exactlyTheSeedsTransitionsAreAllowed() {
        var allowed = 0
        for from in RoleStatus.allCases {
            for to in RoleStatus.allCases where RoleStateMachine.canTransition(from: from, to: to) {
                allowed += 1
                #expect(Self.allowedPairs.contains { $0 == (from, to) })
            }
        }
        #expect(allowed == Self.allowedPairs.count)
    }

    @Test(arguments: [
        (RoleStatus.idle, RoleStatus.responding), (.idle, .error), (.idle, .collaborating), (.idle, .idle),
        (.analyzing, .responding), (.analyzing, .idle), (.thinking, .idle), (.thinking, .analyzing),
        (.collaborating, .idle), (.responding, .thinking), (.responding, .responding), (.error, .responding),
        (.error, .analyzing),
    ])
    func otherTransitionsAreRefusedAndKeepTheState(_ from: RoleStatus, _ to: RoleStatus) {
        var machine = RoleStateMachine(status: from)
        #expect(machine.transition(to: to) == .reject(from: from, to: to))
        #expect(machine.status == from)
    }

    @Test func sourcesListWhereATargetMayBeEnteredFrom() {
        #expect(Set(RoleStateMachine.sources(of: .thinking)) == [.idle, .analyzing, .collaborating, .error])
        #expect(Set(RoleStateMachine.sources(of: .idle)) == [.responding, .error])
        #expect(Set(RoleStateMachine.sources(of: .responding)) == [.thinking, .collaborating])
    }
}

@Suite struct TeamTests {
    static var repositoryRoot: URL {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }

    @Test func theShippedTeamFileIsTheBuiltInTeam() throws {
        let team = try Team.load(path: Self.repositoryRoot.appendingPathComponent("deploy/config/team.json").path)
        #expect(team == Team.chatCentre)
        #expect(team.roles.map(\.name) == ["Alex", "Kulu", "Mike", "Emma", "David", "Catherine"])
    }

    @Test func badTeamsAreRefusedWithAReason() throws {
        var team = Team.chatCentre
        team.sequence.append("Zoe")
        #expect(throws: Team.ValidationError.self) { try team.validate() }
        team = Team.chatCentre
        team.roles[0].provider = ProviderSpec(kind: "openai")
        #expect(throws: Team.ValidationError.self) { try team.validate() }
        team.roles[0].provider = ProviderSpec(kind: "openai", baseURL: "http://127.0.0.1:1/v1", model: "m")
        try team.validate()
        team.roles[0].provider = ProviderSpec(kind: "carrier-pigeon")
        #expect(throws: Team.ValidationError.self) { try team.validate() }
    }

    @Test func optionsFallBackToTheBuiltInTeam() throws {
        #expect(try Orchestrator.Options.parse([]).team(environment: [:]) == .chatCentre)
        #expect(throws: Team.ValidationError.self) {
            try Orchestrator.Options.parse([]).team(environment: ["SWITCHBOARD_TEAM_FILE": "/nonexistent/team.json"])
        }
    }
}

@Suite struct PlannerTests {
    let planner = CollaborationPlanner(team: .chatCentre)

    @Test func theUsersChoiceWins() {
        #expect(planner.pattern(for: "hi", requested: "parallel").pattern == .parallel)
        #expect(planner.pattern(for: "hi", requested: "SEQUENTIAL").pattern == .sequential)
        // An unknown pattern is ignored, not an error.
        #expect(planner.pattern(for: "hi", requested: "zigzag").pattern == .direct)
    }

    @Test(arguments: [
        ("hello switchboard", CollaborationPattern.direct),
        ("compare Kafka and Redis streams for our chat backbone", .parallel),
        ("should we decide to launch in March or in May given the risks", .hierarchical),
        ("make a roadmap for the mobile app", .sequential),
        ("我们应该如何规划下一季度的产品发布", .sequential),
        (String(repeating: "tell me more about the history of distributed systems ", count: 3), .dynamic),
    ])
    func intentAndSizeChooseThePattern(_ content: String, _ expected: CollaborationPattern) {
        #expect(planner.pattern(for: content, requested: nil).pattern == expected)
    }

    @Test func plansFollowSeed000() {
        #expect(
            planner.initialPlan(.sequential, content: "x") == [["Alex"], ["Kulu"], ["Mike"], ["David"], ["Catherine"]])
        #expect(
            planner.initialPlan(.parallel, content: "x") == [
                ["Alex", "Kulu", "Mike", "Emma"], ["David"], ["Catherine"],
            ])
        #expect(planner.initialPlan(.direct, content: "x") == [["Alex"]])
        // Hierarchical: the relevant specialists (at least two, in team order) → David → Catherine.
        #expect(
            planner.initialPlan(.hierarchical, content: "the api architecture and the user experience")
                == [["Mike", "Emma"], ["David"], ["Catherine"]])
        #expect(planner.initialPlan(.hierarchical, content: "zzz") == [["Alex", "Kulu"], ["David"], ["Catherine"]])
    }

    @Test func dynamicFollowsTheIntermediateResults() {
        var plan = planner.initialPlan(.dynamic, content: "what does the market data say")
        #expect(plan == [["Kulu"]])
        // Kulu's result raises design questions: Emma is next.
        plan.append(
            planner.nextDynamicStage(
                plan: plan, content: "what does the market data say",
                latestResult: "the user experience and the design matter")!)
        #expect(plan.last == ["Emma"])
        // Nothing else relevant and two specialists heard: the decision maker, then the communicator.
        plan.append(planner.nextDynamicStage(plan: plan, content: "zzz", latestResult: "zzz")!)
        #expect(plan.last == ["David"])
        plan.append(planner.nextDynamicStage(plan: plan, content: "zzz", latestResult: "zzz")!)
        #expect(plan.last == ["Catherine"])
        #expect(planner.nextDynamicStage(plan: plan, content: "zzz", latestResult: "zzz") == nil)
    }
}

@Suite struct CollaborationEngineTests {
    let engine = CollaborationEngine(team: .chatCentre)

    func message(_ id: String = "m1", _ content: String = "hello", pattern: String? = nil) -> ChatMessageSubmitted {
        ChatMessageSubmitted(
            messageId: id, clientMessageId: "c-\(id)", conversationId: "conv", userId: "u", content: content,
            gateway: "g",
            pattern: pattern)
    }

    func tasks(_ effects: [CollaborationEffect]) -> [AgentTaskRequested] {
        effects.compactMap { if case .task(let task) = $0 { task } else { nil } }
    }

    func events(_ effects: [CollaborationEffect], _ type: String) -> [JSONValue] {
        effects.compactMap { if case .event(type, let data, _) = $0 { data } else { nil } }
    }

    func result(_ task: AgentTaskRequested, failed: Bool = false, chunks: Int = 3) -> AgentTaskCompleted {
        AgentTaskCompleted(
            runId: task.runId!, taskId: task.taskId, conversationId: task.conversationId, role: task.role,
            status: failed ? AgentTaskCompleted.failed : AgentTaskCompleted.completed,
            content: failed ? "" : "\(task.role) says something", error: failed ? "boom" : nil,
            chunks: failed ? 0 : chunks,
            startedAt: 1, finishedAt: 2)
    }

    /// Runs a whole collaboration, answering every task; returns all effects and the task order.
    func run(_ pattern: String, failing: Set<String> = [], record: inout ConversationRecord) -> (
        [CollaborationEffect], [[String]]
    ) {
        var all = engine.receive(message: message(pattern: pattern), traceparent: "t", now: 0, record: &record)
        var waves: [[String]] = []
        var open = tasks(all)
        while !open.isEmpty {
            waves.append(open.map(\.role))
            var next: [AgentTaskRequested] = []
            for task in open {
                let effects = engine.receive(
                    result: result(task, failed: failing.contains(task.role)), now: 10, record: &record)
                all += effects
                next += tasks(effects)
            }
            open = next
        }
        return (all, waves)
    }

    @Test func sequentialRunsOneRoleAfterAnotherEachWithTheResultsBefore() {
        var record = ConversationRecord()
        let (effects, waves) = run("sequential", record: &record)
        #expect(waves == [["Alex"], ["Kulu"], ["Mike"], ["David"], ["Catherine"]])
        let all = tasks(effects)
        #expect(
            all.map { $0.contributions?.map(\.role) ?? [] } == [
                [], ["Alex"], ["Alex", "Kulu"], ["Alex", "Kulu", "Mike"], ["Alex", "Kulu", "Mike", "David"],
            ])
        #expect(all.map(\.isFinal) == [false, false, false, false, true])
        #expect(all.last?.replyMessageId == "reply-m1")
        #expect(Set(all.map(\.replyMessageId)).count == 5)
        // The first role analyses then thinks; later ones collaborate on the results first.
        let paths = effects.compactMap { if case .transition(_, let path, _, _) = $0 { path } else { nil } }
        #expect(paths.first == [.analyzing, .thinking])
        #expect(paths.contains([.analyzing, .collaborating, .thinking]))
        let progress = events(effects, FrameType.collaborationProgress).compactMap { $0["progress"]?.intValue }
        #expect(progress == progress.sorted() && progress.first == 5 && progress.last == 100)
        let complete = try! #require(events(effects, FrameType.collaborationComplete).first)
        #expect(complete["result"]?["status"] == "completed")
        #expect(complete["result"]?["answer"] == "Catherine says something")
        #expect(complete["contributions"]?.arrayValue?.count == 5)
        #expect(record.run == nil && record.history.count == 2)
    }

    @Test func parallelStartsFourRolesAtOnce() {
        var record = ConversationRecord()
        let (effects, waves) = run("parallel", record: &record)
        #expect(waves == [["Alex", "Kulu", "Mike", "Emma"], ["David"], ["Catherine"]])
        let start = try! #require(events(effects, FrameType.collaborationStart).first)
        #expect(start["pattern"] == "parallel")
        #expect(start["roles"] == ["Alex", "Kulu", "Mike", "Emma", "David", "Catherine"])
        #expect(events(effects, FrameType.roleAssigned).count == 6)
    }

    @Test func aFailingRoleIsLeftOutAndTheResultSaysSo() {
        var record = ConversationRecord()
        let (effects, waves) = run("parallel", failing: ["Mike"], record: &record)
        #expect(waves.count == 3)
        let david = tasks(effects).first { $0.role == "David" }
        #expect(david?.contributions?.map(\.role) == ["Alex", "Kulu", "Emma"])
        let complete = try! #require(events(effects, FrameType.collaborationComplete).first)
        #expect(complete["result"]?["status"] == "partial")
        #expect(complete["result"]?["failedRoles"] == ["Mike"])
        #expect(complete["result"]?["note"]?.stringValue?.contains("Mike") == true)
        // The failed role goes from ERROR back to IDLE when the run ends.
        #expect(effects.contains(.transition(role: "Mike", path: [.idle], reason: "run finished", estimatedMs: nil)))
    }

    @Test func whenTheFinalRoleFailsTheLastAnswerIsTheReply() {
        var record = ConversationRecord()
        let (effects, _) = run("sequential", failing: ["Catherine"], record: &record)
        let end = try! #require(events(effects, FrameType.messageStreamEnd).first)
        #expect(end["messageId"] == "reply-m1")
        #expect(end["finalMessage"]?["content"]?.stringValue?.contains("David says something") == true)
        #expect(events(effects, FrameType.collaborationComplete).first?["result"]?["status"] == "partial")
    }

    @Test func duplicatesStartNothingAndBusyConversationsQueue() {
        var record = ConversationRecord()
        let first = engine.receive(message: message("m1", pattern: "direct"), traceparent: "t", now: 0, record: &record)
        #expect(tasks(first).map(\.role) == ["Alex"])
        #expect(
            engine.receive(message: message("m1", pattern: "direct"), traceparent: "t", now: 0, record: &record).isEmpty
        )
        // A second message while the first runs waits for it.
        #expect(
            engine.receive(message: message("m2", pattern: "direct"), traceparent: "t", now: 1, record: &record).isEmpty
        )
        #expect(record.queue.count == 1)
        let done = engine.receive(result: result(tasks(first)[0]), now: 2, record: &record)
        #expect(events(done, FrameType.collaborationComplete).count == 1)
        #expect(tasks(done).map(\.runId) == ["m2"])
        // A result delivered twice is applied once.
        #expect(engine.receive(result: result(tasks(first)[0]), now: 3, record: &record).isEmpty)
    }

    /// A run whose awaited results were lost on the bus (`LostResults`) is abandoned when the next
    /// message comes, which starts at once instead of waiting behind it until the run goes stale.
    @Test func aRunWhoseResultsWereLostIsAbandonedForTheNextMessage() {
        var record = ConversationRecord()
        let first = engine.receive(message: message("m1", pattern: "direct"), traceparent: "t", now: 0, record: &record)
        #expect(CollaborationEngine.awaitedTaskIDs(record.run!) == tasks(first).map(\.taskId))
        let next = engine.receive(
            message: message("m2", pattern: "direct"), traceparent: "t", now: 1, record: &record, resultsLost: true)
        #expect(events(next, FrameType.collaborationComplete).first?["result"]?["status"] != "completed")
        #expect(tasks(next).map(\.runId) == ["m2"])
        #expect(record.queue.isEmpty && record.run?.runId == "m2")
        // The lost result, should it come after all, is ignored like a repeat.
        #expect(
            events(
                engine.receive(result: result(tasks(first)[0]), now: 2, record: &record),
                FrameType.collaborationComplete
            ).isEmpty)
    }

    /// Lost only when every awaited task finished (its result went out) longer than the grace ago.
    @Test func resultsCountAsLostOnlyWhenEveryAwaitedTaskFinishedLongAgo() {
        let now: Int64 = 100_000
        let longAgo = now - LostResults.grace - 1
        #expect(LostResults.areLost(doneAt: [longAgo], now: now))
        #expect(LostResults.areLost(doneAt: [longAgo, longAgo - 10], now: now))
        #expect(!LostResults.areLost(doneAt: [now - 1_000], now: now), "just sent: on its way")
        #expect(!LostResults.areLost(doneAt: [longAgo, nil], now: now), "one role still working")
        #expect(!LostResults.areLost(doneAt: [], now: now), "nothing awaited")
    }

    /// Issue 14 item 10: a reused client message id is answered, not dropped; it is scoped by user.
    @Test func aReusedClientMessageIDIsRejectedAsADuplicateOfItsFirstMessage() throws {
        var record = ConversationRecord()
        func send(_ messageID: String, client: String, user: String = "u", now: Int64) -> [CollaborationEffect] {
            engine.receive(
                message: ChatMessageSubmitted(
                    messageId: messageID, clientMessageId: client, conversationId: "conv", userId: user,
                    content: "hello",
                    gateway: "g", pattern: "direct"),
                traceparent: "t", now: now, record: &record)
        }
        let first = send("m1", client: "c1", now: 0)
        #expect(tasks(first).count == 1)
        _ = engine.receive(result: result(tasks(first)[0]), now: 1, record: &record)
        // The same client id again, as the README's example sends it on its second run.
        let again = send("m2", client: "c1", now: 2)
        #expect(tasks(again).isEmpty)
        let rejected = try #require(events(again, FrameType.messageRejected).first)
        #expect(rejected["reason"] == "duplicate")
        #expect(rejected["messageId"] == "m2" && rejected["duplicateOf"] == "m1" && rejected["clientMessageId"] == "c1")
        // The same event delivered again (Kafka) is still silent: it was answered once.
        #expect(send("m2", client: "c1", now: 3).isEmpty)
        // Another user's "c1" is theirs: it runs.
        #expect(tasks(send("m3", client: "c1", user: "v", now: 4)).count == 1)
        // Records written before the scoping decode, with no client ids remembered.
        let legacy = try JSONDecoder().decode(
            ConversationRecord.self, from: Data(#"{"queue":[],"seen":["client:c1"],"history":[]}"#.utf8))
        #expect(legacy.clientMessages == nil)
    }

    /// Issue 14 item 11: a busy conversation's queue is bounded; the next message is told so.
    @Test func theQueueOfABusyConversationIsBounded() throws {
        var record = ConversationRecord()
        #expect(
            tasks(engine.receive(message: message("m0", pattern: "direct"), traceparent: "t", now: 0, record: &record))
                .count == 1)
        for index in 1...CollaborationEngine.maxQueuedMessages {
            #expect(
                engine.receive(
                    message: message("m\(index)", pattern: "direct"), traceparent: "t", now: 1, record: &record
                ).isEmpty)
        }
        #expect(record.queue.count == CollaborationEngine.maxQueuedMessages)
        let over = engine.receive(
            message: message("m-over", pattern: "direct"), traceparent: "t", now: 1, record: &record)
        let rejected = try #require(events(over, FrameType.messageRejected).first)
        #expect(rejected["reason"] == "queue_full" && rejected["runId"] == "m0")
        #expect(rejected["limit"]?.intValue == CollaborationEngine.maxQueuedMessages)
        #expect(record.queue.count == CollaborationEngine.maxQueuedMessages)
    }

    func stopped(_ task: AgentTaskRequested, content: String, chunks: Int) -> AgentTaskCompleted {
        AgentTaskCompleted(
            runId: task.runId!, taskId: task.taskId, conversationId: task.conversationId, role: task.role,
            status: AgentTaskCompleted.stopped, content: content, chunks: chunks, startedAt: 1, finishedAt: 2)
    }

    @Test func anInterruptStopsTheRunWithWhatWasSaid() {
        var record = ConversationRecord()
        let interrupt = ChatInterruptRequested(conversationId: "conv", userId: "u", requestId: "r", gateway: "g")
        // Nothing to stop: nothing happens.
        #expect(engine.receive(interrupt: interrupt, now: 0, record: &record).isEmpty)
        let first = engine.receive(
            message: message("m1", pattern: "parallel"), traceparent: "t", now: 0, record: &record)
        #expect(engine.receive(interrupt: interrupt, now: 1, record: &record) == [.stopRun(runId: "m1")])
        // A second stop is a no-op.
        #expect(engine.receive(interrupt: interrupt, now: 1, record: &record).isEmpty)
        let specialists = tasks(first)
        var effects: [CollaborationEffect] = []
        effects += engine.receive(result: result(specialists[0]), now: 2, record: &record)
        for task in specialists.dropFirst() {
            effects += engine.receive(
                result: stopped(task, content: task.role == "Kulu" ? "Kulu was saying" : "", chunks: 1), now: 3,
                record: &record)
        }
        // No David, no Catherine: the run ends stopped, with the latest words as its answer.
        #expect(tasks(effects).isEmpty)
        let complete = try! #require(events(effects, FrameType.collaborationComplete).first)
        #expect(complete["result"]?["status"] == "stopped")
        #expect(complete["result"]?["answer"] == "Kulu was saying")
        let end = try! #require(events(effects, FrameType.messageStreamEnd).first)
        #expect(end["metadata"]?["status"] == "stopped" && end["finalMessage"]?["content"] == "Kulu was saying")
        #expect(effects.contains(.transition(role: "Mike", path: [.idle], reason: "stopped", estimatedMs: nil)))
        #expect(record.run == nil)
    }

    @Test func busyPoliciesRejectOrInterrupt() {
        var record = ConversationRecord()
        let first = engine.receive(message: message("m1", pattern: "direct"), traceparent: "t", now: 0, record: &record)
        var rejected = message("m2", pattern: "direct")
        rejected.busyPolicy = "reject"
        let rejection = engine.receive(message: rejected, traceparent: "t", now: 1, record: &record)
        #expect(events(rejection, FrameType.messageRejected).first?["messageId"] == "m2")
        #expect(record.queue.isEmpty)
        var queued = message("m3", pattern: "direct")
        queued.busyPolicy = "enqueue"
        _ = engine.receive(message: queued, traceparent: "t", now: 1, record: &record)
        var urgent = message("m4", pattern: "direct")
        urgent.busyPolicy = "interrupt"
        #expect(engine.receive(message: urgent, traceparent: "t", now: 2, record: &record) == [.stopRun(runId: "m1")])
        // The interrupting message goes first, the queued one after it.
        #expect(record.queue.map(\.message.messageId) == ["m4", "m3"])
        let done = engine.receive(
            result: stopped(tasks(first)[0], content: "Alex was", chunks: 2), now: 3, record: &record)
        #expect(events(done, FrameType.collaborationComplete).first?["result"]?["status"] == "stopped")
        // The final role streamed, so its own stream carries the partial reply: no second one.
        #expect(events(done, FrameType.messageStreamEnd).isEmpty)
        #expect(tasks(done).map(\.runId) == ["m4"])
    }

    @Test func aFocusedRoleLeadsTheNextRunOnly() {
        var record = ConversationRecord()
        let focus = ChatRoleFocusRequested(
            conversationId: "conv", userId: "u", role: "Mike", requestId: "r", gateway: "g")
        #expect(engine.receive(focus: focus, record: &record).isEmpty)
        #expect(record.focus == "Mike")
        // A role the team does not have is ignored.
        var unknown = focus
        unknown.role = "Zed"
        _ = engine.receive(focus: unknown, record: &record)
        #expect(record.focus == "Mike")

        let first = engine.receive(
            message: message("m1", pattern: "parallel"), traceparent: "t", now: 0, record: &record)
        #expect(record.focus == nil && record.run?.lead == "Mike")
        #expect(record.run?.plan == [["Alex", "Kulu", "Emma"], ["David"], ["Mike"]])
        #expect(events(first, FrameType.collaborationStart).first?["lead"] == "Mike")
        var effects = first
        for task in tasks(first) { effects += engine.receive(result: result(task), now: 1, record: &record) }
        effects += engine.receive(result: result(tasks(effects).first { $0.role == "David" }!), now: 2, record: &record)
        let mike = tasks(effects).first { $0.role == "Mike" }!
        #expect(mike.isFinal == true && mike.replyMessageId == "reply-m1")
        let done = engine.receive(result: result(mike), now: 3, record: &record)
        #expect(events(done, FrameType.collaborationComplete).first?["result"]?["answeredBy"] == "Mike")

        // The next run is the team's usual one.
        let next = engine.receive(
            message: message("m2", pattern: "parallel"), traceparent: "t", now: 4, record: &record)
        #expect(record.run?.lead == nil && record.run?.plan.last == ["Catherine"])
        #expect(events(next, FrameType.collaborationStart).first?["lead"] == nil)
    }

    @Test func aMessageCanNameItsLead() {
        var record = ConversationRecord()
        var led = message("m1", "hi", pattern: nil)
        led.leadRole = "Emma"
        let effects = engine.receive(message: led, traceparent: "t", now: 0, record: &record)
        // Short: the direct pattern, answered by the lead alone.
        #expect(tasks(effects).map(\.role) == ["Emma"])
        #expect(tasks(effects).first?.isFinal == true)
    }
}

@Suite struct LeadPlanningTests {
    let planner = CollaborationPlanner(team: .chatCentre)

    @Test func theLeadWritesTheReplyInEveryPattern() {
        let mike = planner.led(by: "Mike")
        #expect(mike.initialPlan(.direct, content: "x") == [["Mike"]])
        #expect(mike.initialPlan(.sequential, content: "x") == [["Alex"], ["Kulu"], ["David"], ["Mike"]])
        #expect(mike.initialPlan(.parallel, content: "x") == [["Alex", "Kulu", "Emma"], ["David"], ["Mike"]])
        #expect(mike.initialPlan(.hierarchical, content: "research the market data").last == ["Mike"])
        #expect(
            !mike.initialPlan(.hierarchical, content: "research the market data").dropLast().joined().contains("Mike"))
        // The synthesizer as lead decides and writes the reply in one stage.
        let david = planner.led(by: "David")
        #expect(david.initialPlan(.parallel, content: "x") == [["Alex", "Kulu", "Mike", "Emma"], ["David"]])
        #expect(david.initialPlan(.sequential, content: "x") == [["Alex"], ["Kulu"], ["Mike"], ["David"]])
        #expect(
            david.nextDynamicStage(plan: [["Alex"], ["Kulu"], ["Mike"]], content: "x", latestResult: "") == ["David"])
        #expect(
            david.nextDynamicStage(plan: [["Alex"], ["Kulu"], ["Mike"], ["David"]], content: "x", latestResult: "")
                == nil)
        // The final role leading changes nothing but who answers short messages.
        let catherine = planner.led(by: "Catherine")
        #expect(catherine.initialPlan(.parallel, content: "x") == planner.initialPlan(.parallel, content: "x"))
        #expect(catherine.initialPlan(.direct, content: "x") == [["Catherine"]])
        // An unknown lead is no lead.
        #expect(planner.led(by: "Zed").initialPlan(.direct, content: "x") == [["Alex"]])
    }
}
