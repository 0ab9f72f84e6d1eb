import Foundation
import Mustache
import SwitchboardContracts

/// Mustache over JSON values: `{{name}}`, `{{user.name}}`, sections over arrays and objects.
public enum TemplateRenderer {
    public static func compile(_ text: String) throws -> MustacheTemplate {
        try MustacheTemplate(string: text)
    }

    public static func render(_ text: String, with context: [String: JSONValue]) throws -> String {
        try compile(text).render(mustacheObject(.object(context)))
    }

    static func mustacheObject(_ value: JSONValue) -> Any {
        switch value {
        case .null: return ""
        case .bool(let value): return value
        case .number(let value):
            return value.rounded() == value && abs(value) < 9.0e15 ? Int(value) as Any : value as Any
        case .string(let value): return value
        case .array(let values): return values.map(mustacheObject)
        case .object(let object): return object.mapValues(mustacheObject)
        }
    }
}

/// The pure logic of the node types that need no I/O: which branch a condition takes, what a merge
/// or an end node outputs. The runner does the rest (agent-worker, HTTP, timers, the user).
public enum NodeLogic {
    /// The port a condition node takes for its `value` input.
    public static func conditionBranch(config: [String: JSONValue], value: JSONValue?) -> String {
        let expected = config["value"] ?? .null
        let op = ConditionOperator(rawValue: config["operator"]?.stringValue ?? "") ?? .isTrue
        let result: Bool
        switch op {
        case .equals: result = value == expected || text(value) == text(expected)
        case .notEquals: result = !(value == expected || text(value) == text(expected))
        case .contains:
            if case .array(let values)? = value {
                result = values.contains(expected)
            } else {
                result = text(value).contains(text(expected))
            }
        case .exists: result = value != nil && value != .null && value != .string("")
        case .greaterThan: result = (number(value) ?? .nan) > (number(expected) ?? .nan)
        case .lessThan: result = (number(value) ?? .nan) < (number(expected) ?? .nan)
        case .isTrue: result = value == .bool(true) || ["true", "yes", "1"].contains(text(value).lowercased())
        }
        return result ? "true" : "false"
    }

    /// A merge node's outputs: `value`, the first input that arrived (by input name), and `values`, all of them.
    public static func merge(_ inputs: [String: JSONValue]) -> [String: JSONValue] {
        let first = inputs.keys.sorted().first.flatMap { inputs[$0] } ?? .null
        return ["value": first, "values": .object(inputs)]
    }

    static func text(_ value: JSONValue?) -> String {
        switch value {
        case .string(let text)?: text
        case .number(let number)?:
            number.rounded() == number && abs(number) < 9.0e15 ? String(Int(number)) : String(number)
        case .bool(let flag)?: String(flag)
        case nil, .null?: ""
        case let other?: String(decoding: (try? JSONEncoder().encode(other)) ?? Data(), as: UTF8.self)
        }
    }

    static func number(_ value: JSONValue?) -> Double? {
        switch value {
        case .number(let number)?: number
        case .string(let text)?: Double(text.trimmingCharacters(in: .whitespaces))
        default: nil
        }
    }
}
