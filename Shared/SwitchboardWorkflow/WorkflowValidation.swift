import Foundation
import SwitchboardContracts

/// One problem of a definition, with the node or connection it concerns.
public struct ValidationIssue: Sendable, Equatable, Codable {
    public struct Code: Hashable, Sendable, Codable, CustomStringConvertible {
        public let rawValue: String
        private init(_ rawValue: String) { self.rawValue = rawValue }
        public init(from decoder: any Decoder) throws {
            rawValue = try decoder.singleValueContainer().decode(String.self)
        }
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(rawValue)
        }
        public var description: String { rawValue }

        /// The definition could not even be read (missing ids, wrong types).
        public static let malformedDefinition = Code("malformed_definition")
        public static let noNodes = Code("no_nodes")
        public static let tooManyNodes = Code("too_many_nodes")
        public static let invalidNodeID = Code("invalid_node_id")
        public static let duplicateNodeID = Code("duplicate_node_id")
        public static let unknownNodeType = Code("unknown_node_type")
        public static let missingStartNode = Code("missing_start_node")
        public static let multipleStartNodes = Code("multiple_start_nodes")
        public static let missingEndNode = Code("missing_end_node")
        public static let danglingConnection = Code("dangling_connection")
        public static let duplicateConnection = Code("duplicate_connection")
        public static let inputAlreadyConnected = Code("input_already_connected")
        public static let unknownOutput = Code("unknown_output")
        public static let startHasInputs = Code("start_has_inputs")
        public static let cycle = Code("cycle")
        public static let missingRequiredInput = Code("missing_required_input")
        public static let unreachableNode = Code("unreachable_node")
        public static let missingConfig = Code("missing_config")
        public static let invalidConfig = Code("invalid_config")
    }

    public var code: Code
    public var message: String
    public var nodeID: String?
    public var connection: WorkflowConnection?

    public init(_ code: Code, _ message: String, node: String? = nil, connection: WorkflowConnection? = nil) {
        self.code = code
        self.message = message
        self.nodeID = node
        self.connection = connection
    }

    enum CodingKeys: String, CodingKey { case code, message, nodeID = "node_id", connection }

    public var json: JSONValue {
        var object: [String: JSONValue] = ["code": .string(code.rawValue), "message": .string(message)]
        if let nodeID { object["node_id"] = .string(nodeID) }
        if let connection { object["connection"] = connection.json }
        return .object(object)
    }
}

/// A definition that passed validation: the only kind the scheduler accepts.
public struct ValidatedWorkflow: Sendable, Equatable {
    public let definition: WorkflowDefinition
    public let nodes: [String: WorkflowNode]
    /// Node ids in a topological order (definition order among equals), for stable event order.
    public let order: [String]
    public let incoming: [String: [WorkflowConnection]]
    public let outgoing: [String: [WorkflowConnection]]

    public func kind(of node: String) -> NodeKind { nodes[node]!.kind! }
}

public enum WorkflowValidator {
    public static let maxNodes = 500

    /// Every problem of the definition (empty: valid), in a stable order.
    public static func problems(of definition: WorkflowDefinition) -> [ValidationIssue] {
        switch validate(definition) {
        case .success: []
        case .failure(let issues): issues.issues
        }
    }

    public struct Issues: Error, Sendable, Equatable {
        public var issues: [ValidationIssue]
    }

    public static func validate(_ definition: WorkflowDefinition) -> Result<ValidatedWorkflow, Issues> {
        var issues: [ValidationIssue] = []
        if definition.nodes.isEmpty { issues.append(.init(.noNodes, "the workflow has no nodes")) }
        if definition.nodes.count > maxNodes {
            issues.append(
                .init(.tooManyNodes, "the workflow has \(definition.nodes.count) nodes; the limit is \(maxNodes)"))
        }
        var nodes: [String: WorkflowNode] = [:]
        var definitionOrder: [String] = []
        for node in definition.nodes {
            if !isValidID(node.id) {
                issues.append(.init(.invalidNodeID, "node ids are 1-64 letters, digits, '-' or '_'", node: node.id))
                continue
            }
            if nodes[node.id] != nil {
                issues.append(.init(.duplicateNodeID, "node id \(node.id) is used more than once", node: node.id))
                continue
            }
            nodes[node.id] = node
            definitionOrder.append(node.id)
            guard let kind = node.kind else {
                let known = NodeKind.allCases.map(\.rawValue).joined(separator: ", ")
                issues.append(
                    .init(.unknownNodeType, "unknown node type \(node.type) (known: \(known))", node: node.id))
                continue
            }
            issues += configProblems(node, kind: kind)
        }
        let starts = definitionOrder.filter { nodes[$0]?.kind == .start }
        if !definition.nodes.isEmpty && starts.isEmpty {
            issues.append(.init(.missingStartNode, "a workflow needs one start node"))
        }
        for extra in starts.dropFirst() {
            issues.append(.init(.multipleStartNodes, "only one start node is allowed", node: extra))
        }
        if !definition.nodes.isEmpty && !definitionOrder.contains(where: { nodes[$0]?.kind == .end }) {
            issues.append(.init(.missingEndNode, "a workflow needs at least one end node"))
        }

        // Connections: each must join two known nodes through ports they have, once.
        var seen = Set<WorkflowConnection>()
        var fedInputs: [String: WorkflowConnection] = [:]
        var incoming: [String: [WorkflowConnection]] = [:]
        var outgoing: [String: [WorkflowConnection]] = [:]
        for connection in definition.connections {
            var usable = true
            for end in [connection.fromNode, connection.toNode] where nodes[end] == nil {
                issues.append(
                    .init(.danglingConnection, "connection refers to unknown node \(end)", connection: connection))
                usable = false
            }
            guard usable else { continue }
            guard seen.insert(connection).inserted else {
                issues.append(
                    .init(
                        .duplicateConnection, "connection \(connection) appears more than once", connection: connection)
                )
                continue
            }
            let input = "\(connection.toNode).\(connection.toInput)"
            if let earlier = fedInputs[input] {
                issues.append(
                    .init(
                        .inputAlreadyConnected,
                        "input \(input) is already fed by \(earlier.fromNode).\(earlier.fromOutput)",
                        node: connection.toNode, connection: connection))
                continue
            }
            fedInputs[input] = connection
            if let kind = nodes[connection.fromNode]?.kind, let outputs = kind.outputs,
                !outputs.contains(connection.fromOutput)
            {
                let names = outputs.sorted().joined(separator: ", ")
                issues.append(
                    .init(
                        .unknownOutput,
                        "a \(kind.rawValue) node has no output \(connection.fromOutput) (outputs: \(names.isEmpty ? "none" : names))",
                        node: connection.fromNode, connection: connection))
                continue
            }
            if nodes[connection.toNode]?.kind == .start {
                issues.append(
                    .init(
                        .startHasInputs, "the start node takes no inputs", node: connection.toNode,
                        connection: connection))
                continue
            }
            if connection.toInput.isEmpty || connection.fromOutput.isEmpty {
                issues.append(.init(.danglingConnection, "connection ports must be named", connection: connection))
                continue
            }
            incoming[connection.toNode, default: []].append(connection)
            outgoing[connection.fromNode, default: []].append(connection)
        }
        for id in definitionOrder {
            guard let kind = nodes[id]?.kind else { continue }
            let inputs = Set((incoming[id] ?? []).map(\.toInput))
            for required in kind.requiredInputs where !inputs.contains(required) {
                issues.append(
                    .init(
                        .missingRequiredInput, "input \(required) of \(kind.rawValue) node \(id) is not connected",
                        node: id))
            }
            if kind == .end || kind == .merge, inputs.isEmpty {
                issues.append(
                    .init(.missingRequiredInput, "a \(kind.rawValue) node needs at least one input", node: id))
            }
        }

        // Cycles (Kahn's algorithm: nodes left over sit on or behind a cycle).
        var indegree = Dictionary(uniqueKeysWithValues: definitionOrder.map { ($0, incoming[$0]?.count ?? 0) })
        var order: [String] = []
        var ready = definitionOrder.filter { indegree[$0] == 0 }
        while !ready.isEmpty {
            let id = ready.removeFirst()
            order.append(id)
            for connection in outgoing[id] ?? [] {
                indegree[connection.toNode]! -= 1
                if indegree[connection.toNode] == 0 { ready.append(connection.toNode) }
            }
        }
        let cyclic = Set(cycleMembers(definitionOrder.filter { !order.contains($0) }, outgoing: outgoing))
        for id in definitionOrder where cyclic.contains(id) {
            issues.append(.init(.cycle, "node \(id) is part of a cycle", node: id))
        }

        // Reachability from the start node.
        if let start = starts.first {
            var reached: Set<String> = [start]
            var frontier = [start]
            while let id = frontier.popLast() {
                for connection in outgoing[id] ?? [] where reached.insert(connection.toNode).inserted {
                    frontier.append(connection.toNode)
                }
            }
            for id in definitionOrder where !reached.contains(id) && !starts.contains(id) {
                issues.append(
                    .init(.unreachableNode, "node \(id) cannot be reached from the start node \(start)", node: id))
            }
        }

        guard issues.isEmpty else { return .failure(Issues(issues: issues)) }
        return .success(
            ValidatedWorkflow(
                definition: definition, nodes: nodes, order: order, incoming: incoming, outgoing: outgoing))
    }

    /// The nodes of `candidates` that lie on a cycle (not merely downstream of one).
    static func cycleMembers(_ candidates: [String], outgoing: [String: [WorkflowConnection]]) -> [String] {
        let set = Set(candidates)
        return candidates.filter { origin in
            var visited: Set<String> = []
            var frontier = (outgoing[origin] ?? []).map(\.toNode).filter { set.contains($0) }
            while let id = frontier.popLast() {
                if id == origin { return true }
                guard visited.insert(id).inserted else { continue }
                frontier += (outgoing[id] ?? []).map(\.toNode).filter { set.contains($0) }
            }
            return false
        }
    }

    static func configProblems(_ node: WorkflowNode, kind: NodeKind) -> [ValidationIssue] {
        var issues: [ValidationIssue] = []
        for key in kind.requiredConfig where node.config[key] == nil {
            issues.append(.init(.missingConfig, "a \(kind.rawValue) node needs config.\(key)", node: node.id))
        }
        func invalid(_ message: String) { issues.append(.init(.invalidConfig, message, node: node.id)) }
        switch kind {
        case .llm:
            if let prompt = node.config["prompt"], prompt.stringValue == nil {
                invalid("config.prompt must be a string")
            }
            if let prompt = node.config["prompt"]?.stringValue, (try? TemplateRenderer.compile(prompt)) == nil {
                invalid("config.prompt is not a valid Mustache template")
            }
        case .template:
            if let template = node.config["template"] {
                if let text = template.stringValue {
                    if (try? TemplateRenderer.compile(text)) == nil {
                        invalid("config.template is not a valid Mustache template")
                    }
                } else {
                    invalid("config.template must be a string")
                }
            }
        case .http:
            if let url = node.config["url"] {
                if let text = url.stringValue, let parsed = URL(string: text),
                    ["http", "https"].contains(parsed.scheme ?? "")
                {
                } else {
                    invalid("config.url must be an http or https URL")
                }
            }
            if let method = node.config["method"],
                !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(method.stringValue ?? "")
            {
                invalid("config.method must be GET, POST, PUT, PATCH or DELETE")
            }
            if let timeout = node.config["timeout_ms"], !((timeout.intValue ?? 0) > 0) {
                invalid("config.timeout_ms must be a positive integer")
            }
            if let retries = node.config["retries"], !((0...10).contains(retries.intValue ?? -1)) {
                invalid("config.retries must be 0-10")
            }
        case .delay:
            if let ms = node.config["ms"], !((0...3_600_000).contains(ms.intValue ?? -1)) {
                invalid("config.ms must be 0-3600000")
            }
        case .condition:
            if let op = node.config["operator"], ConditionOperator(rawValue: op.stringValue ?? "") == nil {
                invalid(
                    "config.operator must be one of \(ConditionOperator.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
        case .start:
            if let inputs = node.config["inputs"], inputs.objectValue == nil {
                invalid("config.inputs must be an object")
            }
        case .humanInput, .merge, .end:
            break
        }
        return issues
    }

    public static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 64
            && id.unicodeScalars.allSatisfy {
                CharacterSet.alphanumerics.contains($0) || "-_".unicodeScalars.contains($0)
            }
    }
}
