import Foundation
import SwitchboardContracts

/// One JSON-RPC 2.0 message of MCP as xiaozhi carries it in `{"type":"mcp","payload":…}`: a request
/// (`method`, `id`), a notification (`method`, no `id`) or a response (`id` with `result` or `error`).
/// The firmware only accepts numeric ids.
public struct MCPMessage: Codable, Sendable, Equatable {
    public struct RPCError: Codable, Sendable, Equatable {
        public var code: Int
        public var message: String

        public init(code: Int, message: String) {
            self.code = code
            self.message = message
        }
    }

    public var jsonrpc = "2.0"
    public var id: Int?
    public var method: String?
    public var params: JSONValue?
    public var result: JSONValue?
    public var error: RPCError?

    public init(
        id: Int? = nil, method: String? = nil, params: JSONValue? = nil, result: JSONValue? = nil,
        error: RPCError? = nil
    ) {
        self.id = id
        self.method = method
        self.params = params
        self.result = result
        self.error = error
    }

    /// A request of the server to the device.
    public static func request(_ id: Int, _ method: String, params: some Encodable) -> MCPMessage {
        MCPMessage(id: id, method: method, params: try? JSONValue(encoding: params))
    }
}

/// MCP's method names and the typed bodies Switchboard sends and reads (MCP 2024-11-05, as the
/// xiaozhi firmware's `mcp_server.cc` implements it).
public enum MCP {
    public static let initialize = "initialize"
    public static let initialized = "notifications/initialized"
    public static let toolsList = "tools/list"
    /// The device's notification that its tools changed: the server lists them again.
    public static let toolsListChanged = "notifications/tools/list_changed"
    public static let toolsCall = "tools/call"
    public static let protocolVersion = "2024-11-05"

    public struct ClientInfo: Codable, Sendable, Equatable {
        public var name: String
        public var version: String
    }

    public struct InitializeParams: Codable, Sendable, Equatable {
        public var protocolVersion = MCP.protocolVersion
        /// No client capabilities (no sampling, no roots).
        public var capabilities: [String: JSONValue] = [:]
        public var clientInfo = ClientInfo(name: "Switchboard", version: "1.0")

        public init() {}
    }

    public struct ToolsListParams: Codable, Sendable, Equatable {
        public var cursor: String
    }

    public struct ToolsListResult: Codable, Sendable, Equatable {
        public var tools: [DeviceTool]
        public var nextCursor: String?

        public init(tools: [DeviceTool], nextCursor: String? = nil) {
            self.tools = tools
            self.nextCursor = nextCursor
        }
    }

    public struct ToolsCallParams: Codable, Sendable, Equatable {
        public var name: String
        public var arguments: JSONValue
    }

    public struct ToolsCallResult: Codable, Sendable, Equatable {
        public struct Content: Codable, Sendable, Equatable {
            public var type: String
            public var text: String?

            public init(type: String, text: String?) {
                self.type = type
                self.text = text
            }
        }

        public var content: [Content]
        public var isError: Bool?

        public init(content: [Content], isError: Bool? = nil) {
            self.content = content
            self.isError = isError
        }

        /// The text parts, newline-joined (the firmware answers one text part).
        public var text: String { content.compactMap(\.text).joined(separator: "\n") }
    }
}

/// The MCP client of one device socket (docs/voice.md#device-tools): `initialize`, then `tools/list`
/// page by page (`nextCursor`), again after each `notifications/tools/list_changed` (the new list
/// replaces the old once its last page is in), and the agents' `tools/call`s, each answered once — by
/// the device, or with an error when the device is not ready, the call is unknown, too many are
/// waiting, it expired or the socket closed. A plain state machine: the gateway sends what it returns.
public struct DeviceMCPClient: Sendable {
    public enum Phase: Sendable, Equatable {
        /// The device did not announce `features.mcp`, or the client was not started.
        case idle
        case initializing
        case listing
        case ready
        /// The device refused `initialize` or `tools/list`; it has no tools for the agents.
        case failed(String)
    }

    public enum Action: Sendable, Equatable {
        /// Send this to the device as `{"type":"mcp","payload":…}`.
        case send(MCPMessage)
        /// The device's tools, after the last page.
        case toolsListed([DeviceTool])
        /// A call's outcome, for the caller listening on `replyTo`.
        case finished(DeviceToolResult, replyTo: String)
    }

    /// Bounds on what one device can make the gateway keep.
    public static let maxTools = 64
    public static let maxPages = 8
    public static let maxPendingCalls = DeviceToolCall.maxWaiting
    public static let callTimeout: Duration = .seconds(10)

    public private(set) var phase: Phase = .idle
    public private(set) var tools: [DeviceTool] = []
    private var nextID = 1
    private var awaiting: (id: Int, method: String)?
    /// The listing under way: its pages so far, and the tools they named.
    private var pages = 0
    private var listed: [DeviceTool] = []
    /// The device's tools changed again while they were being listed: list once more when done.
    private var listAgain = false
    private var pending: [Int: (call: DeviceToolCall, deadline: ContinuousClock.Instant)] = [:]

    public init() {}

    public var pendingCalls: Int { pending.count }

    private mutating func request(_ method: String, params: some Encodable) -> MCPMessage {
        defer { nextID += 1 }
        return .request(nextID, method, params: params)
    }

    /// After the hello of a device with `features.mcp`: `initialize`.
    public mutating func start() -> [Action] {
        guard phase == .idle else { return [] }
        phase = .initializing
        let message = request(MCP.initialize, params: MCP.InitializeParams())
        awaiting = (message.id!, MCP.initialize)
        return [.send(message)]
    }

    /// A message from the device.
    public mutating func receive(_ message: MCPMessage, now: ContinuousClock.Instant = .now) -> [Action] {
        if message.method == MCP.toolsListChanged, message.id == nil { return toolsChanged() }
        // The device's other requests and notifications (state changes): nothing to answer for now.
        guard message.method == nil, let id = message.id else { return [] }
        if let awaiting, awaiting.id == id {
            self.awaiting = nil
            if let error = message.error { return listingFailed("\(awaiting.method): \(error.message)") }
            switch awaiting.method {
            case MCP.initialize:
                // The spec's notification after initialize goes out with the first page request.
                return [.send(MCPMessage(method: MCP.initialized))] + startListing()
            default:
                guard let result = message.result.flatMap({ try? $0.decode(as: MCP.ToolsListResult.self) }) else {
                    return listingFailed("tools/list: the result has no tools array")
                }
                listed += result.tools.filter { tool in !listed.contains { $0.name == tool.name } }
                if listed.count > Self.maxTools { listed.removeLast(listed.count - Self.maxTools) }
                if let cursor = result.nextCursor, !cursor.isEmpty, pages < Self.maxPages, listed.count < Self.maxTools
                {
                    return listNextPage(cursor: cursor)
                }
                tools = listed
                phase = .ready
                guard listAgain else { return [.toolsListed(tools)] }
                listAgain = false
                return [.toolsListed(tools)] + startListing()
            }
        }
        guard let (call, _) = pending.removeValue(forKey: id) else { return [] }
        if let error = message.error {
            return [
                .finished(
                    DeviceToolResult(callId: call.callId, text: error.message, isError: true), replyTo: call.replyTo)
            ]
        }
        guard let result = message.result.flatMap({ try? $0.decode(as: MCP.ToolsCallResult.self) }) else {
            return [
                .finished(
                    DeviceToolResult(callId: call.callId, text: "the device's answer has no content", isError: true),
                    replyTo: call.replyTo)
            ]
        }
        return [
            .finished(
                DeviceToolResult(callId: call.callId, text: result.text, isError: result.isError ?? false),
                replyTo: call.replyTo)
        ]
    }

    /// `notifications/tools/list_changed`: list from the first page, now or after the listing under way.
    /// Before the first listing there is nothing to refresh (it will read the new tools anyway).
    private mutating func toolsChanged() -> [Action] {
        guard phase == .ready || phase == .listing else { return [] }
        guard awaiting == nil else {
            listAgain = true
            return []
        }
        return startListing()
    }

    /// A listing from the first page; the tools listed before still answer calls until it ends.
    private mutating func startListing() -> [Action] {
        pages = 0
        listed = []
        return listNextPage(cursor: "")
    }

    private mutating func listNextPage(cursor: String) -> [Action] {
        if phase != .ready { phase = .listing }
        pages += 1
        let message = request(MCP.toolsList, params: MCP.ToolsListParams(cursor: cursor))
        awaiting = (message.id!, MCP.toolsList)
        return [.send(message)]
    }

    /// A refused `initialize` or `tools/list`: no tools. Tools stored from an earlier listing are
    /// withdrawn, since the device said they changed and cannot say how.
    private mutating func listingFailed(_ reason: String) -> [Action] {
        let hadTools = phase == .ready
        phase = .failed(reason)
        tools = []
        listAgain = false
        return hadTools ? [.toolsListed([])] : []
    }

    /// An agent's call: `tools/call` to the device, or an error outcome at once.
    public mutating func call(_ call: DeviceToolCall, now: ContinuousClock.Instant = .now) -> [Action] {
        let actions = expire(now: now)
        func refuse(_ reason: String) -> [Action] {
            actions + [
                .finished(DeviceToolResult(callId: call.callId, text: reason, isError: true), replyTo: call.replyTo)
            ]
        }
        guard phase == .ready else { return refuse("the device has no tools (MCP not ready)") }
        guard tools.contains(where: { $0.name == call.name }) else {
            return refuse("the device has no tool \(call.name)")
        }
        guard pending.count < Self.maxPendingCalls else { return refuse("too many calls waiting for the device") }
        let message = request(MCP.toolsCall, params: MCP.ToolsCallParams(name: call.name, arguments: call.arguments))
        pending[message.id!] = (call, now + Self.callTimeout)
        return actions + [.send(message)]
    }

    /// Calls the device did not answer in time, answered with an error.
    public mutating func expire(now: ContinuousClock.Instant) -> [Action] {
        let late = pending.filter { $0.value.deadline <= now }.sorted { $0.key < $1.key }
        for (id, _) in late { pending[id] = nil }
        return late.map {
            .finished(
                DeviceToolResult(callId: $0.value.call.callId, text: "the device did not answer", isError: true),
                replyTo: $0.value.call.replyTo)
        }
    }

    /// The socket closed: every waiting call is answered with an error.
    public mutating func close() -> [Action] {
        let waiting = pending.sorted { $0.key < $1.key }
        pending.removeAll()
        phase = .failed("closed")
        return waiting.map {
            .finished(
                DeviceToolResult(callId: $0.value.call.callId, text: "the device disconnected", isError: true),
                replyTo: $0.value.call.replyTo)
        }
    }
}

extension Xiaozhi.Message {
    /// `{"type":"mcp","payload":{…}}` to the device.
    public static func mcp(_ payload: MCPMessage, sessionId: String?) -> Xiaozhi.Message {
        var message = Xiaozhi.Message(type: "mcp", sessionId: sessionId)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        message.payload = JSONValueBox(
            json: String(decoding: (try? encoder.encode(payload)) ?? Data("{}".utf8), as: UTF8.self))
        return message
    }

    /// The JSON-RPC message of an `mcp` message, if it is one.
    public var mcpMessage: MCPMessage? {
        guard type == "mcp", let payload else { return nil }
        return try? JSONDecoder().decode(MCPMessage.self, from: Data(payload.json.utf8))
    }
}
