import Foundation

/// A tool a voice device offers over MCP (its `tools/list`), as the agents see it.
public struct DeviceTool: Codable, Sendable, Hashable {
    /// As the device names it (`self.light.set_power`); the only key of `tools/call`.
    public var name: String
    public var description: String
    /// The tool's JSON Schema (`{"type":"object","properties":…}`), as the device sent it.
    public var inputSchema: JSONValue

    public init(name: String, description: String = "", inputSchema: JSONValue = ["type": "object", "properties": [:]])
    {
        self.name = name
        self.description = description
        self.inputSchema = inputSchema
    }

    enum CodingKeys: String, CodingKey { case name, description, inputSchema }

    /// A device may leave out the description or the schema (a tool without parameters).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        description = try container.decodeIfPresent(String.self, forKey: .description) ?? ""
        inputSchema =
            try container.decodeIfPresent(JSONValue.self, forKey: .inputSchema) ?? [
                "type": "object", "properties": [:],
            ]
    }
}

/// The tools of one device session, carried with a voice turn (`ChatMessageSubmitted.deviceTools`,
/// `AgentTaskRequested.deviceTools`): what the agents may call, and where the device's socket is.
public struct DeviceToolbox: Codable, Sendable, Hashable {
    /// The device's WebSocket session (the gateway's id).
    public var sessionId: String
    /// The gateway instance holding the socket: calls go to `Keyspace.PubSub.deviceToolCalls(gateway:)`.
    public var gateway: String
    public var tools: [DeviceTool]

    public init(sessionId: String, gateway: String, tools: [DeviceTool]) {
        self.sessionId = sessionId
        self.gateway = gateway
        self.tools = tools
    }

    public func tool(named name: String) -> DeviceTool? { tools.first { $0.name == name } }
}

/// An agent's call of a device tool, on its way to the gateway holding the device's socket, which
/// sends it as MCP `tools/call` and publishes the outcome to `replyTo`.
public struct DeviceToolCall: Codable, Sendable, Hashable {
    /// Unique per call; the outcome carries it back.
    public var callId: String
    public var sessionId: String
    public var name: String
    /// A JSON object, as the tool's `inputSchema` describes.
    public var arguments: JSONValue
    /// The Redis channel the outcome is published to (the calling agent-worker's).
    public var replyTo: String

    /// Calls one device may have waiting at once; the gateway answers more with an error at once.
    public static let maxWaiting = 8

    public init(callId: String, sessionId: String, name: String, arguments: JSONValue, replyTo: String) {
        self.callId = callId
        self.sessionId = sessionId
        self.name = name
        self.arguments = arguments
        self.replyTo = replyTo
    }
}

/// The outcome of a `DeviceToolCall`: the device's MCP result (its text content), or why there is none.
public struct DeviceToolResult: Codable, Sendable, Hashable {
    public var callId: String
    /// The result's `content` texts joined by newlines, or the error's message.
    public var text: String
    /// MCP `isError`, a JSON-RPC error, or no answer (device gone, unknown tool, timeout).
    public var isError: Bool

    public init(callId: String, text: String, isError: Bool) {
        self.callId = callId
        self.text = text
        self.isError = isError
    }
}

extension JSONValue {
    /// The value as a typed payload (nil-free: throws when it does not fit).
    public func decode<T: Decodable>(as type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: JSONEncoder().encode(self))
    }
}
