import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTestSupport
import SwitchboardWorkflow
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The workflow protocol (seed 003) through the real gateway, workflow-runners, agent-workers and notifier.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct WorkflowFlowTests {
    static func node(_ id: String, _ type: String, _ config: [String: JSONValue] = [:]) -> JSONValue {
        ["id": .string(id), "type": .string(type), "config": .object(config)]
    }

    static func link(_ from: String, _ output: String, _ to: String, _ input: String) -> JSONValue {
        [
            "from_node": .string(from), "from_output": .string(output), "to_node": .string(to),
            "to_input": .string(input),
        ]
    }

    /// Ten nodes: a condition whose true branch asks an llm (the offline agent-worker) and whose false
    /// branch is skipped, a parallel branch of two templates, a merge, a summary and the end.
    static let tenNodes = WorkflowDefinition.tenNodes(id: "ten", delayMs: 10, llmSideBranch: false).json

    /// A chain of delays: start → d1 → … → dN → end.
    static func chain(_ count: Int, ms: Int) -> JSONValue { WorkflowDefinition.chain(count, ms: ms).json }

    static func wsURL(_ base: String, session: String) -> String { base + "/" + session }

    static func isNode(_ frame: JSONValue, _ node: String, _ status: String) -> Bool {
        frame["type"]?.stringValue == "node_status_update" && frame["node_id"]?.stringValue == node
            && frame["status"]?.stringValue == status
    }

    static func isOutcome(_ frame: JSONValue) -> Bool {
        ["workflow_completed", "workflow_failed", "workflow_stopped"].contains(frame["type"]?.stringValue ?? "")
    }

    /// Starts a run and returns its run id (after workflow_execution_started, which names the run by
    /// the workflow's own id and adds the run id).
    static func execute(_ client: WorkflowClient, _ workflow: JSONValue, inputs: JSONValue = [:]) async throws -> String
    {
        client.send(["type": "execute_workflow", "request_id": "exec", "workflow": workflow, "inputs": inputs])
        let started = try #require(
            await client.frames.first(within: .seconds(20)) {
                ["workflow_execution_started", "workflow_validation_error", "error"].contains(
                    $0["type"]?.stringValue ?? "")
            })
        #expect(started["type"]?.stringValue == "workflow_execution_started", "\(started)")
        #expect(
            started["workflow_id"]?.stringValue == (workflow["id"]?.stringValue ?? started["workflow_id"]?.stringValue))
        return try #require(started["run_id"]?.stringValue)
    }

    @Test func aTenNodeDAGRunsInAValidOrderWithTheRightResults() async throws {
        try await ServiceProcesses.withStack { stack, url, authority in
            let token = try await authority.mint(user: "wf-alice")
            let session = "s-\(UUID().uuidString.prefix(8))"
            let (result, _) = try await WorkflowClient.withConnection(
                url: Self.wsURL(url, session: session), token: token
            ) { client in
                let hello = await client.frames.first("connection_established")
                #expect(hello?["session_id"]?.stringValue == session)
                let runID = try await Self.execute(client, Self.tenNodes)
                let frames = await client.frames.collect(idle: .seconds(30), until: Self.isOutcome)
                return (runID, frames)
            }
            let (runID, frames) = try #require(result)
            let outcome = try #require(frames.last)
            try #require(outcome["type"]?.stringValue == "workflow_completed", "\(frames)")
            let text = outcome["results"]?["end"]?["result"]?.stringValue ?? ""
            #expect(text.hasPrefix("Hello Ada / side Ada! / "), "\(text)")
            #expect(text.count > "Hello Ada / side Ada! / ".count, "the llm node's answer is part of the summary")
            #expect(outcome["summary"]?["completed"]?.intValue == 9 && outcome["summary"]?["skipped"]?.intValue == 1)

            let updates = frames.filter { $0["type"]?.stringValue == "node_status_update" }
            #expect(
                updates.allSatisfy {
                    $0["workflow_id"]?.stringValue == "ten" && $0["run_id"]?.stringValue == runID
                        && $0["timestamp"]?.stringValue != nil
                })
            func index(_ node: String, _ status: String) -> Int? {
                updates.firstIndex { Self.isNode($0, node, status) }
            }
            // Each node: running then completed, once each; the skipped branch never runs.
            for node in ["start", "greet", "check", "praise", "side", "side2", "join", "summary", "end"] {
                #expect(updates.filter { Self.isNode($0, node, "running") }.count == 1, "\(node)")
                #expect(updates.filter { Self.isNode($0, node, "completed") }.count == 1, "\(node)")
                #expect((index(node, "running") ?? .max) < (index(node, "completed") ?? -1))
            }
            #expect(index("wait", "skipped") != nil && index("wait", "running") == nil)
            #expect(updates.first { Self.isNode($0, "check", "completed") }?["outputs"] == ["true": 7])
            #expect(updates.first { Self.isNode($0, "greet", "completed") }?["elapsed_ms"]?.intValue != nil)
            // A node starts only after every node feeding it completed.
            for link in Self.tenNodes["connections"]?.arrayValue ?? [] {
                let from = link["from_node"]?.stringValue ?? "", to = link["to_node"]?.stringValue ?? ""
                // (A skipped node feeds a merge without completing.)
                if let started = index(to, "running") {
                    #expect((index(from, "completed") ?? index(from, "skipped") ?? .max) < started, "\(from) → \(to)")
                }
            }
            // One channel, consecutive offsets: nothing lost, nothing repeated.
            let offsets = frames.compactMap { $0["offset"]?.intValue }
            #expect(!offsets.isEmpty && offsets == Array(offsets[0]..<(offsets[0] + offsets.count)))

            // The llm node's tokens arrive as node_progress on the run's own channel, between its
            // running and completed updates, and add up to its output.
            let progress = frames.filter { $0["type"]?.stringValue == "node_progress" }
            #expect(!progress.isEmpty, "no node_progress frame")
            #expect(
                progress.allSatisfy {
                    $0["workflow_id"]?.stringValue == "ten" && $0["run_id"]?.stringValue == runID
                        && $0["node_id"]?.stringValue == "praise"
                        && $0["status"]?.stringValue == "running" && $0["timestamp"]?.stringValue != nil
                })
            let praised = updates.first { Self.isNode($0, "praise", "completed") }?["outputs"]?["text"]?.stringValue
            #expect(progress.compactMap { $0["delta"]?.stringValue }.joined() == praised)
            #expect(progress.last?["partial_outputs"]?["text"]?.stringValue == praised)
            let positions = progress.compactMap { $0["position"]?.intValue }
            #expect(positions == Array(0..<progress.count))
            let progressAt = frames.indices.filter { frames[$0]["type"]?.stringValue == "node_progress" }
            let praiseRunning = frames.firstIndex { Self.isNode($0, "praise", "running") } ?? .max
            let praiseDone = frames.firstIndex { Self.isNode($0, "praise", "completed") } ?? -1
            #expect(progressAt.allSatisfy { praiseRunning < $0 && $0 < praiseDone })
            // The orchestrator leaves the llm node's result to the runners: no conversation record.
            let redis = RedisClient(
                configuration: RedisClientConfiguration(endpoint: TestEnvironment.redisEndpoint),
                logger: TestEnvironment.logger)
            let record = try await redis.send("EXISTS", RedisArgument(Keyspace.Conversation.record("wf-\(runID)")))
            await redis.close()
            #expect(record.integer == 0, "the orchestrator stored a record for a workflow task")

            // The run is kept: its record with every node, and in the user's list.
            let run = try #require(
                await Self.getJSON("\(Self.httpBase(url))/api/v1/workflows/runs/\(runID)", token: token))
            #expect(run["status"]?.stringValue == "completed")
            #expect(run["nodes"]?["wait"]?["status"]?.stringValue == "skipped")
            #expect(run["nodes"]?["greet"]?["outputs"]?["text"]?.stringValue == "Hello Ada")
            let list = try #require(
                await Self.getJSON("\(Self.httpBase(url))/api/v1/workflows/runs?limit=5", token: token))
            #expect(list["runs"]?.arrayValue?.first?["run_id"]?.stringValue == runID)
            #expect(list["runs"]?.arrayValue?.first?["workflow_id"]?.stringValue == "ten")
            let other = try await authority.mint(user: "wf-mallory")
            #expect(await Self.getJSON("\(Self.httpBase(url))/api/v1/workflows/runs/\(runID)", token: other) == nil)

            // Redis lets the run go (its retention ended): PostgreSQL still has the record, every
            // node's checkpoint and the user's list.
            let cache = RedisClient(
                configuration: RedisClientConfiguration(endpoint: TestEnvironment.redisEndpoint),
                logger: TestEnvironment.logger)
            for key in [
                Keyspace.Workflow.record(runID), Keyspace.Workflow.nodes(runID), Keyspace.User.workflowRuns("wf-alice"),
            ] {
                try await cache.send("DEL", RedisArgument(key))
            }
            await cache.close()
            let archived = try #require(
                await Self.getJSON("\(Self.httpBase(url))/api/v1/workflows/runs/\(runID)", token: token))
            #expect(archived["status"]?.stringValue == "completed")
            #expect(archived["results"] == run["results"] && archived["nodes"] == run["nodes"], "\(archived)")
            #expect((archived["nodes"]?.objectValue ?? [:]).count == 10)
            let archivedList = try #require(
                await Self.getJSON("\(Self.httpBase(url))/api/v1/workflows/runs?limit=5", token: token))
            #expect(archivedList["runs"]?.arrayValue?.first?["run_id"]?.stringValue == runID, "\(archivedList)")
            #expect(archivedList["runs"]?.arrayValue?.first?["status"]?.stringValue == "completed")
            #expect(await Self.getJSON("\(Self.httpBase(url))/api/v1/workflows/runs/\(runID)", token: other) == nil)
        }
    }

    @Test func badDefinitionsAndBadMessagesAreAnsweredWithErrors() async throws {
        try await ServiceProcesses.withStack { stack, url, authority in
            let token = try await authority.mint(user: "wf-bob")
            let (result, closeCode) = try await WorkflowClient.withConnection(
                url: Self.wsURL(url, session: "bad"), token: token
            ) { client in
                _ = await client.frames.first("connection_established")
                let log = FrameLog(client)
                await log.ask([
                    "type": "execute_workflow",
                    "workflow": [
                        "nodes": [
                            Self.node("s", "start"), Self.node("x", "teleport"),
                            Self.node("a", "template", ["template": "{{v}}"]),
                            Self.node("b", "template", ["template": "{{v}}"]), Self.node("c", "condition"),
                            Self.node("e", "end"),
                        ],
                        "connections": [
                            Self.link("s", "v", "a", "v"), Self.link("s", "v", "a", "v"),
                            Self.link("a", "text", "b", "v"),
                            Self.link("b", "text", "a", "w"), Self.link("s", "v", "ghost", "v"),
                            Self.link("c", "maybe", "e", "r"),
                        ],
                    ],
                ])
                await log.ask(["type": "execute_workflow", "workflow": ["nodes": [["type": "start"]]]])
                await log.ask(raw: "{not json")
                await log.ask(["type": "launch_rockets"])
                await log.ask(["type": "control_workflow", "workflow_id": "nope", "action": "explode"])
                await log.ask(["type": "control_workflow", "workflow_id": "no-such-run", "action": "pause"])
                await log.ask(["type": "subscribe", "event_types": ["node_status", "telepathy"]])
                await log.ask(["type": "subscribe", "event_types": ["node_status"]])
                await log.ask(["type": "unsubscribe", "event_types": ["node_status"]])
                return log.seen
            }
            #expect(closeCode == nil, "the connection stays open")
            let answers = try #require(result)
            try #require(answers.count == 9, "\(answers)")
            #expect(answers[0]["type"]?.stringValue == "workflow_validation_error")
            let problems = Set(
                (answers[0]["errors"]?.arrayValue ?? []).map {
                    "\($0["code"]?.stringValue ?? "")@\($0["node_id"]?.stringValue ?? $0["connection"]?["to_node"]?.stringValue ?? "")"
                })
            #expect(
                problems == [
                    "unknown_node_type@x", "duplicate_connection@a", "dangling_connection@ghost", "cycle@a", "cycle@b",
                    "unknown_output@c", "missing_required_input@c", "missing_required_input@e", "missing_config@c",
                    "unreachable_node@x", "unreachable_node@c", "unreachable_node@e",
                ], "\(answers[0])")
            #expect(answers[1]["type"]?.stringValue == "workflow_validation_error")
            #expect(
                answers[1]["errors"]?.arrayValue?.first?["code"]?.stringValue == "malformed_definition", "\(answers[1])"
            )
            #expect(answers[2]["type"]?.stringValue == "error" && answers[2]["code"]?.stringValue == "BAD_FRAME")
            #expect(answers[3]["type"]?.stringValue == "error" && answers[3]["code"]?.stringValue == "UNKNOWN_TYPE")
            #expect(answers[3]["message"]?.stringValue == "Unknown message type: launch_rockets", "the seed's words")
            #expect(answers[4]["type"]?.stringValue == "error" && answers[4]["code"]?.stringValue == "INVALID_ARGUMENT")
            #expect(answers[4]["message"]?.stringValue?.contains("explode") == true)
            #expect(
                answers[5]["type"]?.stringValue == "error"
                    && answers[5]["message"]?.stringValue?.contains("no workflow no-such-run") == true)
            // Names Switchboard does not know are kept, as the seed keeps them.
            #expect(
                answers[6]["type"]?.stringValue == "subscription_confirmed"
                    && answers[6]["subscriptions"] == ["node_status", "telepathy"])
            #expect(
                answers[7]["type"]?.stringValue == "subscription_confirmed"
                    && answers[7]["subscriptions"] == ["node_status", "telepathy"])
            #expect(
                answers[8]["type"]?.stringValue == "subscription_updated"
                    && answers[8]["subscriptions"] == ["telepathy"])
        }
    }

    @Test func pauseResumeAndStopReportTheirRealOutcome() async throws {
        try await ServiceProcesses.withStack { stack, url, authority in
            let token = try await authority.mint(user: "wf-carol")
            let (result, _) = try await WorkflowClient.withConnection(
                url: Self.wsURL(url, session: "ctl"), token: token
            ) { client in
                try await Self.pauseResumeStop(client)
            }
            let runID = try #require(result)
            let run = try #require(
                await Self.getJSON("\(Self.httpBase(url))/api/v1/workflows/runs/\(runID)", token: token))
            #expect(run["status"]?.stringValue == "stopped")
        }
    }

    @Test func aHumanInputNodeWaitsForTheAnswer() async throws {
        try await ServiceProcesses.withStack { stack, url, authority in
            let token = try await authority.mint(user: "wf-dave")
            let workflow: JSONValue = [
                "nodes": [
                    Self.node("start", "start", ["inputs": ["name": "Dave"]]),
                    Self.node("ask", "human_input", ["prompt": "Approve {{name}}?"]),
                    Self.node("reply", "template", ["template": "answer: {{answer}}"]), Self.node("end", "end"),
                ],
                "connections": [
                    Self.link("start", "name", "ask", "name"), Self.link("ask", "answer", "reply", "answer"),
                    Self.link("reply", "text", "end", "result"),
                ],
            ]
            let (result, _) = try await WorkflowClient.withConnection(
                url: Self.wsURL(url, session: "human"), token: token
            ) { client in
                _ = await client.frames.first("connection_established")
                let runID = try await Self.execute(client, workflow)
                let question = await client.frames.first("human_input_required")
                #expect(
                    question?["prompt"]?.stringValue == "Approve Dave?" && question?["node_id"]?.stringValue == "ask")
                // It waits: nothing more happens until the answer.
                #expect(await client.frames.next(within: .milliseconds(800)) == nil)
                client.send([
                    "type": "provide_input", "request_id": "i0", "workflow_id": .string(runID), "node_id": "reply",
                    "answer": "no",
                ])
                let wrong = await client.frames.first("human_input_response")
                #expect(wrong?["success"] == false && wrong?["error"]?["code"]?.stringValue == "not_waiting")
                client.send([
                    "type": "provide_input", "request_id": "i1", "workflow_id": .string(runID), "node_id": "ask",
                    "answer": "yes",
                ])
                let accepted = await client.frames.first("human_input_response")
                #expect(accepted?["success"] == true && accepted?["request_id"]?.stringValue == "i1")
                return await client.frames.collect(until: Self.isOutcome)
            }
            let frames = try #require(result)
            #expect(frames.contains { Self.isNode($0, "ask", "completed") && $0["outputs"] == ["answer": "yes"] })
            #expect(frames.last?["results"]?["end"]?["result"]?.stringValue == "answer: yes", "\(frames)")
        }
    }

    @Test func aReconnectingClientReattachesAndGetsWhatItMissed() async throws {
        try await ServiceProcesses.withStack { stack, url, authority in
            let token = try await authority.mint(user: "wf-erin")
            let session = "re-\(UUID().uuidString.prefix(8))"
            let (first, _) = try await WorkflowClient.withConnection(
                url: Self.wsURL(url, session: session), token: token
            ) { client in
                _ = await client.frames.first("connection_established")
                let runID = try await Self.execute(client, Self.chain(5, ms: 300))
                let update = try #require(
                    await client.frames.first(within: .seconds(20)) { Self.isNode($0, "d1", "running") })
                return (runID, try #require(update["offset"]?.intValue), try #require(update["epoch"]?.stringValue))
            }
            let (runID, offset, epoch) = try #require(first)
            // Away long enough to miss a few nodes.
            try await Task.sleep(for: .milliseconds(900))
            let (second, _) = try await WorkflowClient.withConnection(
                url: Self.wsURL(url, session: session), token: token
            ) { client in
                let hello = try #require(await client.frames.first("connection_established"))
                #expect(
                    hello["workflows"]?.arrayValue?.contains {
                        $0["run_id"]?.stringValue == runID && $0["workflow_id"] == "chain"
                    } == true)
                client.send([
                    "type": "subscribe", "workflow_id": .string(runID), "offset": .number(Double(offset)),
                    "epoch": .string(epoch),
                ])
                return await client.frames.collect(until: Self.isOutcome)
            }
            let frames = try #require(second)
            let confirmed = try #require(frames.first)
            #expect(
                confirmed["type"]?.stringValue == "subscription_confirmed" && confirmed["recovered"] == true,
                "\(confirmed)")
            let offsets = frames.dropFirst().compactMap { $0["offset"]?.intValue }
            #expect(offsets.first == offset + 1, "\(frames)")
            #expect(Array(offsets) == Array((offset + 1)..<(offset + 1 + offsets.count)))
            #expect(frames.contains { Self.isNode($0, "d1", "completed") })
            #expect(frames.last?["type"]?.stringValue == "workflow_completed")
        }
    }

    /// Runs `workflow` on a stack of two runners, kills (-9) the runner that owns the run once `killAt`
    /// says so, and expects the run to complete on the other one, resumed from its checkpoint; `check`
    /// gets the run id, the client's frames and the run store.
    static func killingTheOwner(
        of workflow: JSONValue, user: String, session: String, tokensPerSecond: Int = 200,
        killAt: @escaping @Sendable (JSONValue) -> Bool,
        check: (_ runID: String, _ frames: [JSONValue], _ store: WorkflowRunStore) async throws -> Void
    ) async throws {
        try await ServiceProcesses.withStack(tokensPerSecond: tokensPerSecond) { stack, url, authority in
            try stack.start("workflow-runner")
            try await stack.waitUntilReady()
            let token = try await authority.mint(user: user)
            let redis = RedisClient(
                configuration: RedisClientConfiguration(endpoint: TestEnvironment.redisEndpoint),
                logger: TestEnvironment.logger)
            let (result, _) = try await WorkflowClient.withConnection(
                url: Self.wsURL(url, session: session), token: token
            ) { client in
                _ = await client.frames.first("connection_established")
                let runID = try await Self.execute(client, workflow)
                var frames: [JSONValue] = []
                while let frame = await client.frames.next(within: .seconds(20)) {
                    frames.append(frame.frame)
                    if killAt(frame.frame) { break }
                }
                let ownerLog = stack.logs(of: "workflow-runner").first { $0.log.contains(runID) }
                let owner = try #require(ownerLog, "no runner logged the run")
                stack.kill(httpPort: owner.httpPort)
                frames += await client.frames.collect(idle: .seconds(45), until: Self.isOutcome)
                return (runID, frames, owner.httpPort)
            }
            let (runID, frames, killed) = try #require(result)
            #expect(frames.last?["type"]?.stringValue == "workflow_completed", "\(frames.suffix(3))")
            try await check(runID, frames, WorkflowRunStore(redis: redis))
            let survivor = stack.logs(of: "workflow-runner").first { $0.httpPort != killed }
            #expect(survivor?.log.contains("resuming run from its checkpoint") == true)
            await redis.close()
        }
    }

    @Test func aKilledRunnerHandsItsRunsOverAndNoNodeCompletesTwice() async throws {
        try await Self.killingTheOwner(
            of: Self.chain(8, ms: 500), user: "wf-frank", session: "crash", killAt: { Self.isNode($0, "d3", "running") }
        ) { runID, frames, store in
            for index in 1...8 {
                #expect(frames.filter { Self.isNode($0, "d\(index)", "completed") }.count == 1, "d\(index)")
            }
            let offsets = frames.compactMap { $0["offset"]?.intValue }
            #expect(
                !offsets.isEmpty && offsets == Array(offsets[0]..<(offsets[0] + offsets.count)), "one consistent stream"
            )
            let completions = try await store.completions(runID)
            #expect(completions.count == 10 && completions.values.allSatisfy { $0 == 1 }, "\(completions)")
        }
    }

    /// The llm node's answer comes back on the run's partition: when the runner that asked dies while
    /// the agent-worker still streams (slowly), the answer reaches the runner that took the run over,
    /// after the run's request, and the node completes once, with the text the client saw streamed.
    @Test func aRunnerKilledWhileItsLlmNodeWaitsLeavesTheAnswerToTheNextOwner() async throws {
        let workflow: JSONValue = [
            "id": "asked",
            "nodes": [
                Self.node("start", "start", ["inputs": ["topic": "ferries"]]),
                Self.node("ask", "llm", ["prompt": "Tell me about {{topic}}"]),
                Self.node("end", "end"),
            ],
            "connections": [Self.link("start", "topic", "ask", "topic"), Self.link("ask", "text", "end", "result")],
        ]
        try await Self.killingTheOwner(
            of: workflow, user: "wf-grace", session: "asked", tokensPerSecond: 10,
            killAt: { $0["type"]?.stringValue == "node_progress" }
        ) { runID, frames, store in
            let completed = frames.filter { Self.isNode($0, "ask", "completed") }
            #expect(completed.count == 1)
            let text = completed.first?["outputs"]?["text"]?.stringValue ?? ""
            #expect(!text.isEmpty)
            let progress = frames.filter { $0["type"]?.stringValue == "node_progress" }
            #expect(progress.compactMap { $0["delta"]?.stringValue }.joined() == text)
            let completions = try await store.completions(runID)
            #expect(completions.count == 3 && completions.values.allSatisfy { $0 == 1 }, "\(completions)")
        }
    }

    static func pauseResumeStop(_ client: WorkflowClient) async throws -> String {
        _ = await client.frames.first("connection_established")
        let runID = try await Self.execute(client, Self.chain(4, ms: 600))
        let log = FrameLog(client)
        _ = await log.until { Self.isNode($0, "d1", "running") }
        client.send(["type": "control_workflow", "request_id": "p1", "workflow_id": .string(runID), "action": "pause"])
        // "paused" only once d1, running when the pause came, has finished.
        let paused = await log.until { $0["type"]?.stringValue == "workflow_control_result" }
        #expect(
            paused?["success"] == true && paused?["status"]?.stringValue == "paused"
                && paused?["request_id"]?.stringValue == "p1")
        #expect(log.seen.contains { Self.isNode($0, "d1", "completed") })
        // The seed's answer came at once, before the outcome.
        let acknowledged = log.seen.first { $0["type"]?.stringValue == "workflow_control_response" }
        #expect(
            acknowledged?["status"]?.stringValue == "acknowledged" && acknowledged?["action"]?.stringValue == "pause")
        #expect(
            acknowledged?["workflow_id"]?.stringValue == "chain" && acknowledged?["request_id"]?.stringValue == "p1")
        // Nothing runs while paused.
        let quiet = await client.frames.next(within: .milliseconds(1500))
        #expect(quiet == nil, "\(String(describing: quiet?.frame))")
        client.send(["type": "control_workflow", "request_id": "r1", "workflow_id": .string(runID), "action": "resume"])
        let resumed = await log.until { $0["type"]?.stringValue == "workflow_control_result" }
        #expect(resumed?["success"] == true && resumed?["status"]?.stringValue == "running")
        _ = await log.until { Self.isNode($0, "d2", "running") }
        // A resume of a run that is not paused is refused, with the reason.
        client.send(["type": "control_workflow", "request_id": "r2", "workflow_id": .string(runID), "action": "resume"])
        let refused = await log.until { $0["type"]?.stringValue == "workflow_control_result" }
        #expect(refused?["success"] == false && refused?["error"]?["code"]?.stringValue == "not_paused")
        client.send(["type": "control_workflow", "request_id": "s1", "workflow_id": .string(runID), "action": "stop"])
        let stopped = await log.until(Self.isOutcome)
        #expect(stopped?["type"]?.stringValue == "workflow_stopped" && stopped?["status"]?.stringValue == "stopped")
        let stopAnswer = await log.until { $0["type"]?.stringValue == "workflow_control_result" }
        #expect(stopAnswer?["success"] == true && stopAnswer?["status"]?.stringValue == "stopped")
        #expect(log.seen.contains { Self.isNode($0, "d2", "failed") && $0["error"]?.stringValue == "stopped" })
        #expect(!log.seen.contains { Self.isNode($0, "d3", "running") })
        // The run is over: acknowledged, and answered with that.
        client.send([
            "type": "control_workflow", "request_id": "late", "workflow_id": .string(runID), "action": "resume",
        ])
        let late = await log.until { $0["type"]?.stringValue == "workflow_control_result" }
        #expect(late?["success"] == false && late?["error"]?["code"]?.stringValue == "not_running")
        return runID
    }

    /// The frames a test has read, kept for checks after the fact.
    final class FrameLog: Sendable {
        let client: WorkflowClient
        private let frames = Locked<[JSONValue]>([])

        init(_ client: WorkflowClient) { self.client = client }

        var seen: [JSONValue] { frames.withLock { $0 } }

        /// Reads frames until one satisfies `predicate` (nil after 20 s without a frame).
        func until(_ predicate: (JSONValue) -> Bool) async -> JSONValue? {
            while let received = await client.frames.next(within: .seconds(20)) {
                let frame = received.frame
                frames.withLock { $0.append(frame) }
                if predicate(frame) { return frame }
            }
            return nil
        }

        /// Sends a message (or raw text) and keeps the next frame.
        func ask(_ message: JSONValue? = nil, raw: String? = nil) async {
            if let message { client.send(message) } else { client.sendRaw(raw ?? "") }
            if let received = await client.frames.next(within: .seconds(10)) {
                let frame = received.frame
                frames.withLock { $0.append(frame) }
            }
        }
    }

    // MARK: HTTP

    static func httpBase(_ wsURL: String) -> String {
        wsURL.replacingOccurrences(of: "ws://", with: "http://").replacingOccurrences(of: "/ws", with: "")
    }

    static func getJSON(_ url: String, token: String) async -> JSONValue? {
        await withCheckedContinuation { continuation in
            var request = URLRequest(url: URL(string: url)!)
            request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
            request.timeoutInterval = 5
            URLSession.shared.dataTask(with: request) { data, response, _ in
                guard (response as? HTTPURLResponse)?.statusCode == 200, let data else {
                    return continuation.resume(returning: nil)
                }
                continuation.resume(returning: try? JSONDecoder().decode(JSONValue.self, from: data))
            }.resume()
        }
    }
}
