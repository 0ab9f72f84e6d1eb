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
    /// Stops the conversation's run in progress.
    public static let interrupt = "INTERRUPT"
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
    /// The channel of a channel event (`conversation:<id>`, `user:<id>`, `system:all`…): positions are
    /// per channel, so a client resumes each channel from its own last offset.
    public var channel: String?
    public var offset: Int64?
    public var epoch: String?

    public init(
        id: String = UUID().uuidString.lowercased(), correlationId: String? = nil, type: String,
        timestamp: Int64 = Clock.epochMilliseconds(), status: Status = .success, data: JSONValue = .object([:]),
        error: ErrorInfo? = nil, channel: String? = nil, offset: Int64? = nil, epoch: String? = nil
    ) {
        self.id = id
        self.correlationId = correlationId
        self.type = type
        self.timestamp = timestamp
        self.status = status
        self.data = data
        self.error = error
        self.channel = channel
        self.offset = offset
        self.epoch = epoch
    }

    /// The frame's `data` as `P`: nil for a frame of another type, or one whose data is not `P`'s shape.
    public func payload<P: FramePayload>(_: P.Type) -> P? {
        guard type == P.frameType else { return nil }
        return try? data.decode(as: P.self)
    }

    public static func ack(_ commandID: String, data: JSONValue = .object([:])) -> ServerFrame {
        ServerFrame(correlationId: commandID, type: "ACK", data: data)
    }

    public static func error(_ commandID: String?, code: ErrorCode, message: String) -> ServerFrame {
        ServerFrame(
            correlationId: commandID, type: "ERROR", status: .error,
            error: ErrorInfo(code: code.rawValue, message: message))
    }
}

/// Error codes of error frames, documented in docs/protocol.md.
public enum ErrorCode: String, Sendable, CaseIterable {
    case badFrame = "BAD_FRAME"
    case unknownType = "UNKNOWN_TYPE"
    case invalidArgument = "INVALID_ARGUMENT"
    case contentTooLong = "CONTENT_TOO_LONG"
    case permissionDenied = "PERMISSION_DENIED"
    case rateLimited = "RATE_LIMITED"
    /// A bound on something the client chooses the size of (docs/protocol.md#limits).
    case limitExceeded = "LIMIT_EXCEEDED"
    case unavailable = "UNAVAILABLE"
    case internalError = "INTERNAL"
}

/// The wire form of events in Redis: `<offset> <epoch> <frame type> <created µs> <traceparent> <frame JSON>`,
/// so a gateway can stamp the position into the frame (and name the SSE event, time the delivery, trace
/// its write) without parsing it. Ephemeral events carry offset 0 and epoch "-"; an event outside any
/// trace carries traceparent "-".
public enum ChannelWire {
    public struct Message: Sendable, Equatable {
        public var offset: Int64
        public var epoch: String
        public var frameType: String
        /// When the event was created (its envelope's time, µs since the epoch); 0 when unknown.
        public var createdAt: Int64
        public var frameJSON: String
        /// The W3C traceparent of the span that published the event (docs/configuration.md#traces); nil
        /// when tracing is off, and for events read back from a channel's stream.
        public var traceparent: String?

        public init(
            offset: Int64, epoch: String, frameType: String, createdAt: Int64 = 0, traceparent: String? = nil,
            frameJSON: String
        ) {
            self.offset = offset
            self.epoch = epoch
            self.frameType = frameType
            self.createdAt = createdAt
            self.traceparent = traceparent
            self.frameJSON = frameJSON
        }

        public var isEphemeral: Bool { offset == 0 }
        public var position: StreamPosition { StreamPosition(epoch: epoch, offset: offset) }

        /// The frame sent to a client: the stored frame with its channel position added.
        public var stampedJSON: String {
            guard offset > 0, frameJSON.first == "{", frameJSON.count > 2 else { return frameJSON }
            return "{\"offset\":\(offset),\"epoch\":\"\(epoch)\"," + frameJSON.dropFirst()
        }

        /// The frame's `data` as `P`: nil for a frame of another type, or one whose data is not `P`'s shape.
        public func payload<P: FramePayload>(_: P.Type) -> P? {
            guard frameType == P.frameType else { return nil }
            return try? JSONDecoder().decode(FrameData<P>.self, from: Data(frameJSON.utf8)).data
        }
    }

    /// Only the `data` of a frame.
    private struct FrameData<P: Decodable>: Decodable {
        var data: P
    }

    static let separator: Character = " "
    /// The epoch of an ephemeral event (its offset is 0).
    public static let ephemeralEpoch = "-"
    /// The traceparent of an event outside any trace.
    public static let noTrace = "-"

    /// The form's fields in order, the frame last (it may hold the separator). Every encoder, the
    /// notifier's Lua included, lays the fields out through this one function.
    static func fields<Field>(
        offset: Field, epoch: Field, frameType: Field, createdAt: Field, traceparent: Field, frameJSON: Field
    ) -> [Field] {
        [offset, epoch, frameType, createdAt, traceparent, frameJSON]
    }

    public static func encode(_ message: Message) -> String {
        fields(
            offset: "\(message.offset)", epoch: message.epoch, frameType: message.frameType,
            createdAt: "\(message.createdAt)", traceparent: message.traceparent ?? noTrace,
            frameJSON: message.frameJSON
        ).joined(separator: String(separator))
    }

    /// An ephemeral event's wire form made from its frame's bytes, without decoding them.
    public static func encodeEphemeral(
        frameType: String, createdAt: Int64, traceparent: String?, frameJSON: [UInt8]
    ) -> [UInt8] {
        let head = encode(
            Message(
                offset: 0, epoch: ephemeralEpoch, frameType: frameType, createdAt: createdAt, traceparent: traceparent,
                frameJSON: ""))
        return Array(head.utf8) + frameJSON
    }

    /// The form as a Lua expression over a script's variables, for a script that publishes from Redis.
    public static func luaExpression(
        offset: String, epoch: String, frameType: String, createdAt: String, traceparent: String, frameJSON: String
    ) -> String {
        fields(
            offset: offset, epoch: epoch, frameType: frameType, createdAt: createdAt, traceparent: traceparent,
            frameJSON: frameJSON
        )
        .joined(separator: " .. '\(separator)' .. ")
    }

    /// The field names of a channel's stream entries (`<offset>-1 {t: type, c: created µs, f: frame}`).
    public enum StreamField {
        public static let frameType = "t"
        public static let createdAt = "c"
        public static let frameJSON = "f"
    }

    /// The field names of a channel's meta hash.
    public enum MetaField {
        public static let epoch = "epoch"
        public static let offset = "offset"
    }

    public static func decode(_ bytes: [UInt8]) -> Message? {
        let text = String(decoding: bytes, as: UTF8.self)
        let parts = text.split(separator: separator, maxSplits: 4, omittingEmptySubsequences: false)
        guard parts.count == 5, let offset = Int64(parts[0]), !parts[1].isEmpty, !parts[2].isEmpty,
            let createdAt = Int64(parts[3])
        else { return nil }
        var frame = parts[4]
        var traceparent: String?
        // A frame is a JSON object: anything else before the first space is the traceparent field. The
        // form without it (before traces) still reads, so gateways can be upgraded before notifiers.
        if frame.first != "{", let space = frame.firstIndex(of: separator) {
            let field = frame[..<space]
            traceparent = field == noTrace ? nil : String(field)
            frame = frame[frame.index(after: space)...]
        }
        return Message(
            offset: offset, epoch: String(parts[1]), frameType: String(parts[2]), createdAt: createdAt,
            traceparent: traceparent, frameJSON: String(frame))
    }
}

/// One JSON style for client frames: sorted keys so tests and logs read the same every time.
public enum FrameEncoding {
    public static func json(_ frame: ServerFrame) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(frame), as: UTF8.self)
    }
}

/// WebSocket close codes. 4000–4499: the client should reconnect (with backoff) and recover by
/// offset; 4500–4999: it should not reconnect before fixing the cause. Documented in docs/protocol.md.
public enum CloseCode: UInt16, Sendable, CaseIterable {
    case shutdown = 4000
    case serverError = 4001
    case slowConsumer = 4002
    case insufficientState = 4003
    case noPong = 4004
    /// Bisheng's chat socket: nothing received within connection_timeout.
    case idleTimeout = 4005
    case unauthorized = 4500
    case badRequest = 4501
    case permissionDenied = 4502
    case connectionLimit = 4503
    case tooManyRequests = 4504
    /// Bisheng's chat socket: the client ended the session (`end`).
    case sessionEnded = 4505

    public var shouldReconnect: Bool { rawValue < 4500 }
}

/// A channel position a client can resume from: SSE `id:` / `Last-Event-ID` is `<epoch>:<offset>`.
public struct StreamPosition: Sendable, Hashable, CustomStringConvertible {
    public var epoch: String
    public var offset: Int64

    public init(epoch: String, offset: Int64) {
        self.epoch = epoch
        self.offset = offset
    }

    public init?(lastEventID: String) {
        guard let colon = lastEventID.lastIndex(of: ":"),
            let offset = Int64(lastEventID[lastEventID.index(after: colon)...]),
            offset >= 0
        else { return nil }
        let epoch = String(lastEventID[..<colon])
        guard !epoch.isEmpty else { return nil }
        self.init(epoch: epoch, offset: offset)
    }

    public var description: String { "\(epoch):\(offset)" }
}
