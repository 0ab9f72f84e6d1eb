import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import SwitchboardWorkflow
import Testing

/// The workflow-runner's egress rules and limits through the real services (docs/workflows.md#egress):
/// every forbidden destination, an oversized body and a template bomb fail their node with a clear
/// error while the runner goes on serving other runs; a user's runs at once are capped; a run taken
/// over too often fails.
@Suite(.serialized, .timeLimit(.minutes(6)))
struct WorkflowLimitsTests {
    typealias Flow = WorkflowFlowTests

    static func httpNode(_ url: String) -> JSONValue {
        [
            "nodes": [
                Flow.node("start", "start"), Flow.node("fetch", "http", ["url": .string(url), "retries": 0]),
                Flow.node("end", "end"),
            ],
            "connections": [
                Flow.link("start", "value", "fetch", "value"), Flow.link("fetch", "body", "end", "result"),
            ],
        ]
    }

    /// Runs each workflow at once on one connection; returns each run's outcome frame, in order. Frames
    /// of all runs interleave, so starts are matched by request id and outcomes by run id.
    static func outcomes(_ client: WorkflowClient, _ workflows: [JSONValue]) async throws -> [JSONValue] {
        for (index, workflow) in workflows.enumerated() {
            client.send(["type": "execute_workflow", "request_id": .string("exec-\(index)"), "workflow": workflow])
        }
        var runIDs: [Int: String] = [:]
        var outcomes: [String: JSONValue] = [:]
        let deadline = ContinuousClock.now + .seconds(90)
        while ContinuousClock.now < deadline, runIDs.count < workflows.count || outcomes.count < workflows.count,
            let received = await client.frames.next(within: .seconds(30))
        {
            let frame = received.frame
            if frame["type"]?.stringValue == "workflow_execution_started",
                let request = frame["request_id"]?.stringValue,
                let index = Int(request.dropFirst("exec-".count)), let id = frame["run_id"]?.stringValue
            {
                runIDs[index] = id
            } else if Flow.isOutcome(frame), let id = frame["run_id"]?.stringValue {
                outcomes[id] = frame
            }
        }
        return try workflows.indices.map { index in
            let id = try #require(runIDs[index], "run \(index) did not start")
            return try #require(outcomes[id], "no outcome for run \(index)")
        }
    }

    @Test func forbiddenDestinationsBigBodiesAndTemplateBombsFailTheirNodeOnly() async throws {
        let fake = FakeOpenAI()
        try await fake.withServer { port in
            try await ServiceProcesses.withStack(runnerEnvironment: [
                "SWITCHBOARD_WORKFLOW_EGRESS_ALLOW": "127.0.0.1:\(port)",
                "SWITCHBOARD_WORKFLOW_HTTP_MAX_REDIRECTS": "3",
            ]) { stack, url, authority in
                let runnerPort = try #require(stack.logs(of: "workflow-runner").first?.adminPort)
                let metrics = "http://127.0.0.1:\(runnerPort)/metrics"
                let bomb: JSONValue = [
                    "nodes": [
                        Flow.node("start", "start", ["inputs": ["a": .array((0..<1000).map { .number(Double($0)) })]]),
                        Flow.node("boom", "template", ["template": "{{#a}}{{#a}}{{#a}}0123456789{{/a}}{{/a}}{{/a}}"]),
                        Flow.node("end", "end"),
                    ],
                    "connections": [Flow.link("start", "a", "boom", "a"), Flow.link("boom", "text", "end", "result")],
                ]
                let cases: [(workflow: JSONValue, error: String?)] = [
                    (Self.httpNode("http://127.0.0.1:\(port)/egress/ok"), nil),
                    (Self.httpNode(metrics), "127.0.0.1 is a loopback address"),
                    (
                        Self.httpNode("http://169.254.169.254/latest/meta-data/"),
                        "169.254.169.254 is a cloud metadata address"
                    ),
                    (Self.httpNode("http://[::1]:\(runnerPort)/metrics"), "::1 is a loopback address"),
                    (Self.httpNode("http://localhost:\(runnerPort)/metrics"), "localhost resolves to"),
                    (
                        Self.httpNode("http://127.0.0.1:\(port)/egress/redirect?to=\(metrics)"),
                        "127.0.0.1 is a loopback address"
                    ),
                    (Self.httpNode("http://127.0.0.1:\(port)/egress/big"), "over the 1048576-byte limit"),
                    (bomb, "template error"),
                    (Flow.chain(6, ms: 300), nil),
                ]
                let token = try await authority.mint(user: "wf-egress-\(UUID().uuidString.prefix(6))")
                let (result, _) = try await WorkflowClient.withConnection(
                    url: Flow.wsURL(url, session: "egress"), token: token
                ) { client in
                    _ = await client.frames.first("connection_established")
                    return try await Self.outcomes(client, cases.map(\.workflow))
                }
                let outcomes = try #require(result)
                for (index, (outcome, expected)) in zip(outcomes, cases.map(\.error)).enumerated() {
                    if let expected {
                        #expect(outcome["type"]?.stringValue == "workflow_failed", "case \(index): \(outcome)")
                        let error = outcome["error"]?.stringValue ?? ""
                        #expect(error.contains(expected), "case \(index): \(error)")
                        // Nothing of the forbidden answer reaches the client.
                        #expect(!error.contains("sb_workflow"), "case \(index)")
                    } else {
                        #expect(outcome["type"]?.stringValue == "workflow_completed", "case \(index): \(outcome)")
                    }
                }
                #expect(outcomes[0]["results"]?["end"]?["result"] == ["ok": true])
                // The redirect was followed to the fake (it answered) and refused at the next hop.
                #expect(fake.count("egress-ok") == 1)
                // The runner is alive and serves the next run.
                let (after, _) = try await WorkflowClient.withConnection(
                    url: Flow.wsURL(url, session: "after"), token: token
                ) { client in
                    _ = await client.frames.first("connection_established")
                    return try await Self.outcomes(client, [Flow.chain(2, ms: 10)])
                }
                #expect(after?.first?["type"]?.stringValue == "workflow_completed")
            }
        }
    }

    static let waiting: JSONValue = [
        "nodes": [
            Flow.node("start", "start"), Flow.node("ask", "human_input", ["prompt": "go?"]), Flow.node("end", "end"),
        ],
        "connections": [Flow.link("start", "value", "ask", "value"), Flow.link("ask", "answer", "end", "result")],
    ]

    @Test func theEleventhRunAtOnceFailsAndATooOftenTakenOverRunFails() async throws {
        try await ServiceProcesses.withStack(runnerEnvironment: ["SWITCHBOARD_WORKFLOW_MAX_TAKEOVERS": "0"]) {
            stack, url, authority in
            let token = try await authority.mint(user: "wf-busy-\(UUID().uuidString.prefix(6))")
            let (result, _) = try await WorkflowClient.withConnection(
                url: Flow.wsURL(url, session: "busy"), token: token
            ) { client in
                _ = await client.frames.first("connection_established")
                var runs: [String] = []
                for _ in 0..<10 {
                    runs.append(try await Flow.execute(client, Self.waiting))
                    _ = await client.frames.first("human_input_required")
                }
                let eleventh = try await Flow.execute(client, Self.waiting)
                let refused = await client.frames.first(within: .seconds(20)) {
                    Flow.isOutcome($0) && $0["run_id"]?.stringValue == eleventh
                }
                // Once one ends, a new run starts again.
                client.send([
                    "type": "control_workflow", "request_id": "s0", "workflow_id": .string(runs[0]), "action": "stop",
                ])
                _ = await client.frames.first(within: .seconds(20)) {
                    Flow.isOutcome($0) && $0["run_id"]?.stringValue == runs[0]
                }
                let twelfth = try await Flow.execute(client, Self.waiting)
                let asked = await client.frames.first(within: .seconds(20)) {
                    $0["type"]?.stringValue == "human_input_required" && $0["run_id"]?.stringValue == twelfth
                }
                for (index, run) in (runs.dropFirst() + [twelfth]).enumerated() {
                    client.send([
                        "type": "control_workflow", "request_id": .string("s\(index + 1)"), "workflow_id": .string(run),
                        "action": "stop",
                    ])
                }
                return (refused, asked)
            }
            let (refused, asked) = try #require(result)
            #expect(refused?["type"]?.stringValue == "workflow_failed", "\(String(describing: refused))")
            #expect(refused?["error"]?.stringValue?.contains("too many runs at once: at most 10 per user") == true)
            #expect(asked != nil)

            // Takeovers: with a limit of 0, the runner that inherits a run fails it instead of resuming it.
            try stack.start("workflow-runner", environment: ["SWITCHBOARD_WORKFLOW_MAX_TAKEOVERS": "0"])
            try await stack.waitUntilReady()
            let (taken, _) = try await WorkflowClient.withConnection(
                url: Flow.wsURL(url, session: "takeover"), token: token
            ) { client in
                _ = await client.frames.first("connection_established")
                let runID = try await Flow.execute(client, Flow.chain(8, ms: 500))
                _ = await client.frames.first(within: .seconds(20)) { Flow.isNode($0, "d2", "running") }
                let owner = try #require(stack.logs(of: "workflow-runner").first { $0.log.contains(runID) })
                stack.kill(httpPort: owner.httpPort)
                return await client.frames.first(within: .seconds(60)) {
                    Flow.isOutcome($0) && $0["run_id"]?.stringValue == runID
                }
            }
            let outcome = try #require(taken ?? nil)
            #expect(outcome["type"]?.stringValue == "workflow_failed", "\(outcome)")
            #expect(outcome["error"]?.stringValue?.contains("taken over 1 times") == true, "\(outcome)")
        }
    }
}
