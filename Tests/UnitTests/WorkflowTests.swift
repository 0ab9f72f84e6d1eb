import Foundation
import SwitchboardContracts
import SwitchboardWorkflow
import Testing

/// The end-to-end tests' ten nodes (a condition with an llm branch and a skipped delay, a parallel
/// branch, a merge), for the validator's and the scheduler's tests.
enum SampleWorkflows {
    static let tenNodes = WorkflowDefinition.tenNodes(id: "sample", delayMs: 10, llmSideBranch: false)
}

@Suite struct WorkflowValidationTests {
    @Test func theSampleIsValid() {
        #expect(WorkflowValidator.problems(of: SampleWorkflows.tenNodes) == [])
    }

    @Test func decodesTheSeedShape() throws {
        let json = #"""
            {"id":"w1","nodes":[{"id":"s","type":"start"},{"id":"e","type":"end"}],
             "connections":[{"from_node":"s","from_output":"x","to_node":"e","to_input":"y"}]}
            """#
        let definition = try JSONDecoder().decode(WorkflowDefinition.self, from: Data(json.utf8))
        #expect(definition.connections == [.init("s", "x", "e", "y")])
        #expect(WorkflowValidator.problems(of: definition) == [])
    }

    @Test func listsEveryProblem() {
        let definition = WorkflowDefinition(
            nodes: [
                WorkflowNode(id: "s", type: "start"),
                WorkflowNode(id: "x", type: "teleport"),
                WorkflowNode(id: "a", type: "template", config: ["template": "{{v}}"]),
                WorkflowNode(id: "b", type: "template", config: ["template": "{{v}}"]),
                WorkflowNode(id: "c", type: "condition"),
                WorkflowNode(id: "lonely", type: "delay", config: ["ms": 5]),
                WorkflowNode(id: "l", type: "llm"),
                WorkflowNode(id: "e", type: "end"),
                WorkflowNode(id: "e", type: "end"),
            ],
            connections: [
                .init("s", "v", "a", "v"),
                .init("s", "v", "a", "v"),
                .init("a", "text", "b", "v"),
                .init("b", "text", "a", "w"),
                .init("s", "v", "ghost", "v"),
                .init("s", "w", "c", "other"),
                .init("c", "maybe", "e", "r"),
                .init("s", "v", "l", "v"),
                .init("l", "text", "e", "r2"),
            ])
        let codes = WorkflowValidator.problems(of: definition).map {
            "\($0.code)@\($0.nodeID ?? $0.connection?.description ?? "-")"
        }
        #expect(
            Set(codes) == [
                "duplicate_node_id@e", "unknown_node_type@x", "missing_config@c", "missing_config@l",
                "duplicate_connection@s.v -> a.v", "dangling_connection@s.v -> ghost.v", "unknown_output@c",
                "missing_required_input@c", "cycle@a", "cycle@b", "unreachable_node@x", "unreachable_node@lonely",
            ])
        #expect(codes.count == 12)
    }

    @Test func missingStartAndEnd() {
        let definition = WorkflowDefinition(
            nodes: [WorkflowNode(id: "t", type: "template", config: ["template": "x"])], connections: [])
        let codes = WorkflowValidator.problems(of: definition).map(\.code)
        #expect(codes.contains(.missingStartNode) && codes.contains(.missingEndNode))
        #expect(
            WorkflowValidator.problems(of: WorkflowDefinition(nodes: [], connections: [])).map(\.code).contains(
                .noNodes))
    }

    @Test func badConfiguration() {
        let definition = WorkflowDefinition(
            nodes: [
                WorkflowNode(id: "s", type: "start"),
                WorkflowNode(id: "h", type: "http", config: ["url": "ftp://x", "retries": 99]),
                WorkflowNode(id: "t", type: "template", config: ["template": "{{#open}}"]),
                WorkflowNode(id: "e", type: "end"),
            ],
            connections: [.init("s", "v", "h", "v"), .init("h", "body", "t", "v"), .init("t", "text", "e", "r")])
        let problems = WorkflowValidator.problems(of: definition)
        #expect(problems.filter { $0.code == .invalidConfig }.map(\.nodeID) == ["h", "h", "t"])
    }
}

@Suite struct WorkflowSchedulerTests {
    static func validated(_ definition: WorkflowDefinition = SampleWorkflows.tenNodes) throws -> ValidatedWorkflow {
        try WorkflowValidator.validate(definition).get()
    }

    /// Runs the scheduler with trivial node behaviour, recording the order of events.
    static func drive(_ scheduler: inout WorkflowScheduler, branch: String = "true") -> [String] {
        var log: [String] = []
        var queue = scheduler.start()
        while !queue.isEmpty {
            let action = queue.removeFirst()
            switch action {
            case .start(let node, let inputs):
                log.append("run \(node)")
                let result: NodeResult
                switch scheduler.workflow.kind(of: node) {
                case .start: result = NodeResult(outputs: ["name": "Ada", "score": 7])
                case .condition: result = NodeResult(outputs: [branch: inputs["value"] ?? .null], ports: [branch])
                case .merge: result = NodeResult(outputs: NodeLogic.merge(inputs))
                case .end: result = NodeResult(outputs: inputs)
                default: result = NodeResult(outputs: ["text": .string(node), "value": .string(node)])
                }
                queue += scheduler.nodeCompleted(node, result)
            case .skipped(let node): log.append("skip \(node)")
            case .finish(let outcome): log.append("finish \(outcome)")
            }
        }
        return log
    }

    @Test func theTakenBranchRunsAndTheOtherIsSkipped() throws {
        var scheduler = WorkflowScheduler(workflow: try Self.validated())
        let log = Self.drive(&scheduler)
        #expect(log.contains("run praise") && log.contains("skip wait") && !log.contains("run wait"))
        #expect(scheduler.status(of: "wait") == .skipped && scheduler.status(of: "join") == .completed)
        #expect(log.filter { $0.hasPrefix("run") }.count == 9)
        guard case .completed(let results)? = scheduler.outcome else { Issue.record("not completed"); return }
        #expect(results["end"] == ["result": "summary"])
        // Every node starts after the nodes that feed it completed.
        let position = Dictionary(uniqueKeysWithValues: log.enumerated().map { ($1, $0) })
        for connection in SampleWorkflows.tenNodes.connections {
            if let to = position["run \(connection.toNode)"], let from = position["run \(connection.fromNode)"] {
                #expect(from < to)
            }
        }
    }

    @Test func theOtherBranch() throws {
        var scheduler = WorkflowScheduler(workflow: try Self.validated())
        let log = Self.drive(&scheduler, branch: "false")
        #expect(log.contains("run wait") && log.contains("skip praise"))
        #expect(scheduler.inputs(of: "join") == ["b": "wait"])
    }

    @Test func independentBranchesAreReadyTogether() throws {
        var scheduler = WorkflowScheduler(workflow: try Self.validated())
        #expect(scheduler.start() == [.start(node: "start", inputs: [:])])
        let ready = scheduler.nodeCompleted("start", NodeResult(outputs: ["name": "Ada", "score": 7]))
        #expect(
            ready == [
                .start(node: "greet", inputs: ["name": "Ada"]), .start(node: "check", inputs: ["value": 7]),
                .start(node: "side", inputs: ["name": "Ada"]),
            ])
        #expect(scheduler.running == ["greet", "check", "side"])
    }

    @Test func skippingPropagatesThroughABranch() throws {
        let definition = WorkflowDefinition(
            nodes: [
                WorkflowNode(id: "s", type: "start"),
                WorkflowNode(id: "c", type: "condition", config: ["operator": "is_true"]),
                WorkflowNode(id: "a", type: "template", config: ["template": "a"]),
                WorkflowNode(id: "b", type: "template", config: ["template": "b"]),
                WorkflowNode(id: "e", type: "end"),
            ],
            connections: [
                .init("s", "v", "c", "value"), .init("c", "false", "a", "v"), .init("a", "text", "b", "v"),
                .init("b", "text", "e", "r"),
            ])
        var scheduler = WorkflowScheduler(workflow: try Self.validated(definition))
        let log = Self.drive(&scheduler, branch: "true")
        #expect(log == ["run s", "run c", "skip a", "skip b", "skip e", "finish completed(results: [:])"])
    }

    @Test func aFailedNodeFailsTheRun() throws {
        var scheduler = WorkflowScheduler(workflow: try Self.validated())
        _ = scheduler.start()
        _ = scheduler.nodeCompleted("start", NodeResult(outputs: ["name": "Ada", "score": 7]))
        #expect(scheduler.nodeFailed("greet", error: "boom") == [.finish(.failed(node: "greet", error: "boom"))])
        #expect(scheduler.nodeCompleted("check", NodeResult(outputs: [:])) == [])
        #expect(scheduler.isFinished)
    }

    @Test func pauseHoldsReadyNodesUntilResume() throws {
        var scheduler = WorkflowScheduler(workflow: try Self.validated())
        _ = scheduler.start()
        scheduler.pause()
        #expect(scheduler.nodeCompleted("start", NodeResult(outputs: ["name": "Ada", "score": 7])) == [])
        #expect(scheduler.running.isEmpty)
        #expect(scheduler.resume().count == 3)
        #expect(scheduler.resume() == [])
    }

    @Test func stopFinishesOnce() throws {
        var scheduler = WorkflowScheduler(workflow: try Self.validated())
        _ = scheduler.start()
        #expect(scheduler.stop() == [.finish(.stopped)])
        #expect(scheduler.stop() == [])
        #expect(scheduler.nodeCompleted("start", NodeResult(outputs: [:])) == [])
    }

    @Test func resumesFromACheckpointWithoutRerunningCompletedNodes() throws {
        var first = WorkflowScheduler(workflow: try Self.validated())
        _ = first.start()
        _ = first.nodeCompleted("start", NodeResult(outputs: ["name": "Ada", "score": 7]))
        _ = first.nodeCompleted("greet", NodeResult(outputs: ["text": "Hello Ada"]))
        // check and side were running when the runner died.
        var resumed = WorkflowScheduler(workflow: first.workflow, checkpoint: first.records)
        let actions = resumed.start()
        #expect(
            actions == [.start(node: "check", inputs: ["value": 7]), .start(node: "side", inputs: ["name": "Ada"])])
        #expect(resumed.status(of: "greet") == .completed)
    }
}

@Suite struct NodeLogicTests {
    @Test(arguments: [
        ("equals", JSONValue.number(3), JSONValue.string("3"), "true"),
        ("not_equals", .string("a"), .string("a"), "false"),
        ("contains", .string("hello world"), .string("world"), "true"),
        ("greater_than", .string("10"), .number(9), "true"),
        ("less_than", .number(1), .number(0), "false"),
        ("exists", .string(""), .null, "false"),
        ("is_true", .string("yes"), .null, "true"),
    ])
    func conditions(_ op: String, _ value: JSONValue, _ expected: JSONValue, _ branch: String) {
        #expect(
            NodeLogic.conditionBranch(config: ["operator": .string(op), "value": expected], value: value) == branch)
    }

    @Test func mustacheRendersJSON() throws {
        let text = try TemplateRenderer.render(
            "{{name}} has {{count}} items: {{#items}}{{.}};{{/items}} {{user.city}}",
            with: ["name": "Ada", "count": 2, "items": ["x", "y"], "user": ["city": "Paris"]])
        #expect(text == "Ada has 2 items: x;y; Paris")
    }
}
