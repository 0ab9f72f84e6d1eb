import Foundation
import SwitchboardContracts

/// A workflow as clients send it (seed 003): nodes, and connections from one node's output to another's input.
public struct WorkflowDefinition: Codable, Sendable, Equatable {
    public var id: String?
    public var name: String?
    public var nodes: [WorkflowNode]
    public var connections: [WorkflowConnection]

    public init(id: String? = nil, name: String? = nil, nodes: [WorkflowNode], connections: [WorkflowConnection]) {
        self.id = id
        self.name = name
        self.nodes = nodes
        self.connections = connections
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decodeIfPresent(String.self, forKey: .id)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        nodes = try container.decodeIfPresent([WorkflowNode].self, forKey: .nodes) ?? []
        connections = try container.decodeIfPresent([WorkflowConnection].self, forKey: .connections) ?? []
    }
}

public struct WorkflowNode: Codable, Sendable, Equatable {
    public var id: String
    public var type: String
    /// The node's settings; their shape depends on the type (see docs/workflows.md).
    public var config: [String: JSONValue]

    public init(id: String, type: String, config: [String: JSONValue] = [:]) {
        self.id = id
        self.type = type
        self.config = config
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        type = try container.decode(String.self, forKey: .type)
        config = try container.decodeIfPresent([String: JSONValue].self, forKey: .config) ?? [:]
    }

    public var kind: NodeKind? { NodeKind(rawValue: type) }
}

public struct WorkflowConnection: Codable, Sendable, Hashable, CustomStringConvertible {
    public var fromNode: String
    public var fromOutput: String
    public var toNode: String
    public var toInput: String

    public init(_ fromNode: String, _ fromOutput: String, _ toNode: String, _ toInput: String) {
        self.fromNode = fromNode
        self.fromOutput = fromOutput
        self.toNode = toNode
        self.toInput = toInput
    }

    enum CodingKeys: String, CodingKey {
        case fromNode = "from_node", fromOutput = "from_output", toNode = "to_node", toInput = "to_input"
    }

    public var description: String { "\(fromNode).\(fromOutput) -> \(toNode).\(toInput)" }

    public var json: JSONValue {
        [
            "from_node": .string(fromNode), "from_output": .string(fromOutput), "to_node": .string(toNode),
            "to_input": .string(toInput),
        ]
    }
}

/// The node types the runner executes.
public enum NodeKind: String, Sendable, CaseIterable, Codable {
    case start, llm, template, condition, http, delay, humanInput = "human_input", merge, end

    /// Output ports when the type has a fixed set; nil: any name (start's outputs are its inputs' names).
    public var outputs: Set<String>? {
        switch self {
        case .start: nil
        case .llm, .template: ["text"]
        case .condition: ["true", "false"]
        case .http: ["status", "body"]
        case .delay: ["value"]
        case .humanInput: ["answer"]
        case .merge: ["value", "values"]
        case .end: []
        }
    }

    /// Inputs that must be connected.
    public var requiredInputs: [String] {
        switch self {
        case .condition: ["value"]
        default: []
        }
    }

    /// Runs when any one of its inputs arrives (the others' branches may have been skipped); every other
    /// type needs all of its inputs and is skipped when one of them is.
    public var joinsBranches: Bool { self == .merge || self == .end }

    /// Configuration keys that must be present.
    var requiredConfig: [String] {
        switch self {
        case .llm: ["prompt"]
        case .template: ["template"]
        case .http: ["url"]
        case .delay: ["ms"]
        case .condition: ["operator"]
        default: []
        }
    }
}

/// Condition operators: the `value` input compared with `config.value`.
public enum ConditionOperator: String, Sendable, CaseIterable {
    case equals, notEquals = "not_equals", contains, exists, greaterThan = "greater_than", lessThan = "less_than"
    case isTrue = "is_true"
}
