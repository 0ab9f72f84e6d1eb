import Foundation

/// A command from a client on the chat-centre WebSocket (seed 000): `{id, type, timestamp, data, priority?}`.
public struct ClientCommand: Codable, Sendable, Equatable {
    public var id: String
    public var type: String
    public var timestamp: Int64?
    public var data: JSONValue?
    public var priority: String?

    public init(id: String, type: String, timestamp: Int64? = Clock.epochMilliseconds(), data: JSONValue? = nil) {
        self.id = id
        self.type = type
        self.timestamp = timestamp
        self.data = data
    }
}

public enum ClientCommandType {
    public static let sendMessage = "SEND_MESSAGE"
    public static let typingStart = "TYPING_START"
    public static let typingStop = "TYPING_STOP"
    public static let subscribeConversation = "SUBSCRIBE_CONVERSATION"
    public static let unsubscribeConversation = "UNSUBSCRIBE_CONVERSATION"
    public static let requestRoleFocus = "REQUEST_ROLE_FOCUS"
    public static let ping = "PING"
}

/// A frame from the server: `{id, correlationId?, type, timestamp, status, data, error?}`, plus the
/// channel position (`offset`, `epoch`) of events that can be recovered after a reconnect.
public struct ServerFrame: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable { case success, error, progress }

    public struct ErrorInfo: Codable, Sendable, Equatable {
        public var code: String
        public var message: String

        public init(code: String, message: String) {
            self.code = code
            self.message = message
        }
    }

    public var id: String
    public var correlationId: String?
    public var type: String
    public var timestamp: Int64
    public var status: Status
    public var data: JSONValue
    public var error: ErrorInfo?
    public var offset: Int64?
    public var epoch: String?

    public init(
        id: String = UUID().uuidString.lowercased(), correlationId: String? = nil, type: String,
        timestamp: Int64 = Clock.epochMilliseconds(), status: Status = .success, data: JSONValue = .object([:]),
        error: ErrorInfo? = nil, offset: Int64? = nil, epoch: String? = nil
    ) {
        self.id = id
        self.correlationId = correlationId
        self.type = type
        self.timestamp = timestamp
        self.status = status
        self.data = data
        self.error = error
        self.offset = offset
        self.epoch = epoch
    }

    public static func ack(_ commandID: String, data: JSONValue = .object([:])) -> ServerFrame {
        ServerFrame(correlationId: commandID, type: "ACK", data: data)
    }

    public static func error(_ commandID: String?, code: ErrorCode, message: String) -> ServerFrame {
        ServerFrame(
            correlationId: commandID, type: "ERROR", status: .error, error: ErrorInfo(code: code.rawValue, message: message))
    }
}

/// Error codes of error frames, documented in docs/protocol.md.
public enum ErrorCode: String, Sendable, CaseIterable {
    case badFrame = "BAD_FRAME"
    case unknownType = "UNKNOWN_TYPE"
    case invalidArgument = "INVALID_ARGUMENT"
    case contentTooLong = "CONTENT_TOO_LONG"
    case permissionDenied = "PERMISSION_DENIED"
    case unavailable = "UNAVAILABLE"
    case internalError = "INTERNAL"
}

/// The wire form of events in Redis: `<offset> <epoch> <frame JSON>`, so a gateway can stamp the position
/// into the frame without parsing it. Ephemeral events carry offset 0 and epoch "-".
public enum ChannelWire {
    public static func encode(offset: Int64, epoch: String, frameJSON: String) -> String {
        "\(offset) \(epoch) \(frameJSON)"
    }

    public static func decode(_ bytes: [UInt8]) -> (offset: Int64, epoch: String, frameJSON: Substring)? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let firstSpace = text.firstIndex(of: " ") else { return nil }
        let rest = text[text.index(after: firstSpace)...]
        guard let secondSpace = rest.firstIndex(of: " "), let offset = Int64(text[..<firstSpace]) else { return nil }
        return (offset, String(rest[..<secondSpace]), rest[rest.index(after: secondSpace)...])
    }

    /// The frame sent to a client: the stored frame with its channel position added.
    public static func stamp(frameJSON: Substring, offset: Int64, epoch: String) -> String {
        guard offset > 0, frameJSON.first == "{" else { return String(frameJSON) }
        return "{\"offset\":\(offset),\"epoch\":\"\(epoch)\"," + frameJSON.dropFirst()
    }

    /// Redis keys of a channel; the hash tag keeps them on one Redis Cluster slot.
    public static func liveChannel(_ channel: Channel) -> String { "sb:{\(channel)}:live" }
    public static func streamKey(_ channel: Channel) -> String { "sb:{\(channel)}:stream" }
    public static func metaKey(_ channel: Channel) -> String { "sb:{\(channel)}:meta" }
    public static func seenKey(_ channel: Channel, eventID: UUID) -> String { "sb:{\(channel)}:seen:\(eventID.uuidString.lowercased())" }
}

/// One JSON style for client frames: sorted keys so tests and logs read the same every time.
public enum FrameEncoding {
    public static func json(_ frame: ServerFrame) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(frame), as: UTF8.self)
    }
}
