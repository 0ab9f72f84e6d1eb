import Foundation
import SwitchboardContracts

/// A function call a model asked for, the function named as the model was given it (`ToolNames`).
public struct ToolCall: Sendable, Hashable {
    /// The model's id for the call; the result answers it (`tool_call_id`).
    public var id: String
    public var name: String
    /// The arguments as the model wrote them: a JSON object's text, perhaps empty or malformed.
    public var arguments: String

    public init(id: String, name: String, arguments: String) {
        self.id = id
        self.name = name
        self.arguments = arguments
    }
}

/// One round of a model's tool use: what it said, the calls it made, and each call's result, in order;
/// sent back with the next request so the model goes on from them.
public struct ToolRound: Sendable, Hashable {
    public var text: String
    public var calls: [ToolCall]
    /// The result of each call, by its id.
    public var results: [String: String]

    public init(text: String = "", calls: [ToolCall], results: [String: String]) {
        self.text = text
        self.calls = calls
        self.results = results
    }
}

/// Device tool names as OpenAI accepts function names (`^[a-zA-Z0-9_-]{1,64}$`), and back:
/// `self.light.set` is `self_light_set`. Names that come out the same get `_2`, `_3`… in the order the
/// device listed them, so each wire name means one tool.
public struct ToolNames: Sendable, Equatable {
    public private(set) var wireNames: [String] = []
    private var deviceNameByWire: [String: String] = [:]

    public init(_ tools: [DeviceTool]) {
        for tool in tools {
            let base = Self.sanitised(tool.name)
            var name = base
            var suffix = 2
            while deviceNameByWire[name] != nil {
                let tail = "_\(suffix)"
                name = String(base.prefix(Self.maxLength - tail.count)) + tail
                suffix += 1
            }
            wireNames.append(name)
            deviceNameByWire[name] = tool.name
        }
    }

    static let maxLength = 64

    /// Every character OpenAI refuses becomes `_`; cut to 64; an empty name is `tool`.
    static func sanitised(_ name: String) -> String {
        let allowed = name.unicodeScalars.map { scalar -> Character in
            scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || scalar == "_" || scalar == "-")
                ? Character(scalar) : "_"
        }
        let cut = String(allowed.prefix(maxLength))
        return cut.isEmpty ? "tool" : cut
    }

    /// The device's name of a tool the model called, or nil for a name it was not given.
    public func deviceName(for wireName: String) -> String? { deviceNameByWire[wireName] }
}

/// Collects the `tool_calls` pieces of a streamed answer: the first piece of a call carries its `index`,
/// `id` and `function.name`; later pieces with the same `index` carry more of `function.arguments`.
public struct ToolCallAccumulator: Sendable, Equatable {
    public struct Piece: Decodable, Sendable, Equatable {
        public struct Function: Decodable, Sendable, Equatable {
            public var name: String?
            public var arguments: String?

            public init(name: String? = nil, arguments: String? = nil) {
                self.name = name
                self.arguments = arguments
            }
        }

        /// Some servers (older vLLM, Ollama) leave `index` out of a single call: it is then call 0.
        public var index: Int?
        public var id: String?
        public var function: Function?

        public init(index: Int?, id: String? = nil, function: Function? = nil) {
            self.index = index
            self.id = id
            self.function = function
        }
    }

    private var calls: [Int: ToolCall] = [:]

    public init() {}

    public mutating func add(_ piece: Piece) {
        let index = piece.index ?? 0
        var call = calls[index] ?? ToolCall(id: "", name: "", arguments: "")
        if let id = piece.id, !id.isEmpty { call.id = id }
        // Names come whole in practice; a server that splits them is appended to like the arguments.
        if let name = piece.function?.name { call.name += name }
        if let arguments = piece.function?.arguments { call.arguments += arguments }
        calls[index] = call
    }

    /// The calls in `index` order; a call without an id gets one, so its result can answer it.
    public var toolCalls: [ToolCall] {
        calls.sorted { $0.key < $1.key }.map { index, call in
            var call = call
            if call.id.isEmpty { call.id = "call_\(index)" }
            return call
        }
    }
}
