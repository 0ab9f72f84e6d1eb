import Foundation
import SwitchboardContracts

/// A node's output over its limit, or a template that could render more than it.
public struct OutputLimitError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Bounds on what a node may produce (docs/workflows.md#limits): a template is checked before it is
/// rendered, because a template bomb (nested sections over a long list) exhausts memory or CPU during
/// the render itself, long before its result could be measured.
public enum OutputLimits {
    /// Section iterations a template may cost, whatever it outputs.
    public static let maximumTemplateWork = 200_000

    /// The encoded size of a node's outputs; throws when over `limit` bytes.
    public static func check(outputs: [String: JSONValue], limit: Int) throws {
        let size = (try? JSONEncoder().encode(outputs))?.count ?? 0
        guard size <= limit else {
            throw OutputLimitError(
                "the node's output is \(size) bytes, over the \(limit)-byte limit (SWITCHBOARD_WORKFLOW_MAX_OUTPUT_BYTES)"
            )
        }
    }

    /// Renders a Mustache template whose upper bound on output fits `limit`; then checks the result.
    public static func render(_ template: String, with inputs: [String: JSONValue], limit: Int) throws -> String {
        let bound = try upperBound(of: template, inputs: inputs, limit: limit)
        guard bound <= limit else {
            throw OutputLimitError("the template could render up to \(bound) bytes, over the \(limit)-byte limit")
        }
        let text = try TemplateRenderer.render(template, with: inputs)
        guard text.utf8.count <= limit else {
            throw OutputLimitError("the template rendered \(text.utf8.count) bytes, over the \(limit)-byte limit")
        }
        return text
    }

    /// An upper bound on the bytes `template` renders over `inputs`, found without rendering: each
    /// section repeats its content at most as often as the longest list under that name anywhere in
    /// the inputs, and each variable renders at most the longest value under that name (HTML-escaped).
    /// Stops counting (and throws) once over `limit` or over `maximumTemplateWork` iterations.
    public static func upperBound(of template: String, inputs: [String: JSONValue], limit: Int) throws -> Int {
        var index = Index()
        index.add(.object(inputs), key: nil)
        var total = 0
        var work = 0
        var multipliers: [Int] = []
        var factor = 1
        var rest = Substring(template)
        func add(_ bytes: Int) throws {
            let (product, overflow) = bytes.multipliedReportingOverflow(by: factor)
            total = overflow ? Int.max : total.addingReportingOverflow(product).partialValue
            if overflow || total > limit || total < 0 {
                throw OutputLimitError(
                    "the template could render more than the \(limit)-byte limit (nested sections over long lists?)")
            }
        }
        while let open = rest.range(of: "{{") {
            try add(rest[..<open.lowerBound].utf8.count)
            let triple = rest[open.upperBound...].hasPrefix("{")
            let closer = triple ? "}}}" : "}}"
            guard let close = rest[open.upperBound...].range(of: closer) else {
                try add(rest[open.lowerBound...].utf8.count)
                return total
            }
            var tag = rest[open.upperBound..<close.lowerBound]
            if triple { tag = tag.dropFirst() }
            rest = rest[close.upperBound...]
            let sigil: Character = tag.first ?? " "
            let name = tag.dropFirst("#^/!>&=".contains(sigil) ? 1 : 0).trimmingCharacters(in: .whitespaces)
            switch sigil {
            case "#":
                let times = index.listLength(name)
                let (next, overflow) = factor.multipliedReportingOverflow(by: max(times, 1))
                work += overflow ? Int.max / 2 : next
                guard !overflow, work <= maximumTemplateWork else {
                    throw OutputLimitError(
                        "the template's nested sections repeat more than \(maximumTemplateWork) times")
                }
                multipliers.append(max(times, 1))
                factor = next
            case "^":
                multipliers.append(1)
            case "/":
                if let last = multipliers.popLast() { factor /= last }
            case "!", ">":
                continue
            case "=":
                throw OutputLimitError("set-delimiter tags are not supported in workflow templates")
            default:
                try add(index.valueLength(name))
            }
        }
        try add(rest.utf8.count)
        return total
    }

    /// The longest list and value under each name in the inputs.
    struct Index {
        var lists: [String: Int] = [:]
        var values: [String: Int] = [:]
        var longestList = 0
        var longestElement = 0

        mutating func add(_ value: JSONValue, key: String?) {
            if let key { values[key] = max(values[key] ?? 0, Self.length(value)) }
            switch value {
            case .array(let items):
                if let key { lists[key] = max(lists[key] ?? 0, items.count) }
                longestList = max(longestList, items.count)
                for item in items {
                    longestElement = max(longestElement, Self.length(item))
                    add(item, key: nil)
                }
            case .object(let fields):
                for (name, field) in fields { add(field, key: name) }
            default:
                break
            }
        }

        func listLength(_ name: String) -> Int {
            if name == "." { return longestList }
            return lists[Self.last(name)] ?? 1
        }

        /// Escaping included, so it also bounds `{{{name}}}` and `{{&name}}`.
        func valueLength(_ name: String) -> Int {
            name == "." ? max(longestElement, values.values.max() ?? 0) : values[Self.last(name)] ?? 0
        }

        static func last(_ name: String) -> String {
            String(name.split(separator: ".").last ?? Substring(name))
        }

        /// Bytes a value can render as, escaping included (`"` becomes `&quot;`: 6 bytes for 1).
        static func length(_ value: JSONValue) -> Int {
            switch value {
            case .null: 0
            case .bool: 5
            case .number: 32
            case .string(let text): text.utf8.reduce(0) { $0 + ("&<>\"'`=/".utf8.contains($1) ? 6 : 1) }
            case .array, .object: ((try? JSONEncoder().encode(value))?.count ?? 0) * 6
            }
        }
    }
}
