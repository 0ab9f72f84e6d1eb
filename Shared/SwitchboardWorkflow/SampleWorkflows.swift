import Foundation
import SwitchboardContracts

// The workflows the end-to-end tests and the workflow bench run: one source for their shape.
extension WorkflowDefinition {
    /// Ten nodes: a condition whose true branch asks an llm (`praise`) and whose false branch (a delay of
    /// `delayMs`) is skipped, a parallel branch of two nodes (`side`, `side2`), a merge, a summary and the
    /// end. With `llmSideBranch` the side branch asks an llm too ("Say something about …") instead of
    /// filling a template ("side …").
    public static func tenNodes(id: String? = nil, delayMs: Int, llmSideBranch: Bool) -> WorkflowDefinition {
        let side =
            llmSideBranch
            ? WorkflowNode(id: "side", type: NodeKind.llm.rawValue, config: ["prompt": "Say something about {{name}}"])
            : WorkflowNode(id: "side", type: NodeKind.template.rawValue, config: ["template": "side {{name}}"])
        return WorkflowDefinition(
            id: id,
            nodes: [
                WorkflowNode(id: "start", type: "start", config: ["inputs": ["name": "Ada", "score": 7]]),
                WorkflowNode(id: "greet", type: "template", config: ["template": "Hello {{name}}"]),
                WorkflowNode(id: "check", type: "condition", config: ["operator": "greater_than", "value": 5]),
                WorkflowNode(id: "praise", type: "llm", config: ["prompt": "Praise a score of {{value}}"]),
                WorkflowNode(id: "wait", type: "delay", config: ["ms": .number(Double(delayMs))]),
                side,
                WorkflowNode(id: "side2", type: "template", config: ["template": "{{text}}!"]),
                WorkflowNode(id: "join", type: "merge"),
                WorkflowNode(
                    id: "summary", type: "template", config: ["template": "{{greeting}} / {{side}} / {{verdict}}"]),
                WorkflowNode(id: "end", type: "end"),
            ],
            connections: [
                .init("start", "name", "greet", "name"), .init("start", "score", "check", "value"),
                .init("check", "true", "praise", "value"), .init("check", "false", "wait", "value"),
                .init("start", "name", "side", "name"), .init("side", "text", "side2", "text"),
                .init("praise", "text", "join", "a"), .init("wait", "value", "join", "b"),
                .init("greet", "text", "summary", "greeting"), .init("join", "value", "summary", "verdict"),
                .init("side2", "text", "summary", "side"), .init("summary", "text", "end", "result"),
            ])
    }

    /// A chain of `count` delays of `ms` each: start → d1 → … → dN → end, id "chain".
    public static func chain(_ count: Int, ms: Int) -> WorkflowDefinition {
        var nodes = [WorkflowNode(id: "start", type: "start", config: ["inputs": ["value": "x"]])]
        var connections: [WorkflowConnection] = []
        var previous = ("start", "value")
        for index in 1...count {
            nodes.append(WorkflowNode(id: "d\(index)", type: "delay", config: ["ms": .number(Double(ms))]))
            connections.append(.init(previous.0, previous.1, "d\(index)", "value"))
            previous = ("d\(index)", "value")
        }
        nodes.append(WorkflowNode(id: "end", type: "end"))
        connections.append(.init(previous.0, previous.1, "end", "result"))
        return WorkflowDefinition(id: "chain", nodes: nodes, connections: connections)
    }

    /// The definition as a client sends it. Strings and JSON values only, so encoding cannot fail.
    public var json: JSONValue {
        (try? JSONValueEncoder().encode(self)) ?? .null
    }
}
