import Foundation
import SwitchboardContracts

/// What a gateway puts on `Topics.voiceUplink` for a device session (the Kafka key): the session's
/// opening, each Opus packet, each control message, its end. One event type so one partition keeps
/// them in order.
public struct VoiceUplinkEvent: EventPayload, Equatable {
    public static let eventType = "voice.uplink"

    public enum Kind: String, Codable, Sendable {
        /// The device said hello; `userId`, `conversationId` and `gateway` are set.
        case open
        case audio
        /// A JSON message of the device (listen, abort, mcp, iot), as it sent it.
        case control
        /// The device disconnected.
        case close
    }

    public var sessionId: String
    public var kind: Kind
    /// Per-session sequence number, from 0, so a voice-worker can see a gap or a duplicate.
    public var sequence: Int64
    public var deviceId: String?
    public var userId: String?
    public var conversationId: String?
    public var gateway: String?
    /// One Opus packet (base64 in JSON).
    public var audio: Data?
    public var message: String?
    /// When the gateway received it (µs since the epoch), for latency metrics.
    public var receivedAt: Int64

    public init(
        sessionId: String, kind: Kind, sequence: Int64, deviceId: String? = nil, userId: String? = nil,
        conversationId: String? = nil, gateway: String? = nil, audio: Data? = nil, message: String? = nil,
        receivedAt: Int64 = Clock.epochMicroseconds()
    ) {
        self.sessionId = sessionId
        self.kind = kind
        self.sequence = sequence
        self.deviceId = deviceId
        self.userId = userId
        self.conversationId = conversationId
        self.gateway = gateway
        self.audio = audio
        self.message = message
        self.receivedAt = receivedAt
    }
}

/// Downlink from voice-worker to the one gateway holding the device's socket: a Redis PUBLISH to
/// that gateway's channel (`Keyspace.PubSub.voiceDownlink`, the gateway found in `VoiceRouteStore`). Binary-safe: a text header line,
/// then the payload bytes.
public enum VoiceDownlink {
    public enum Kind: String, Sendable, Equatable {
        /// One Opus packet to pace out.
        case audio = "a"
        /// A JSON message, sent in order with the audio around it.
        case json = "j"
        /// The end of a turn's speech: `tts stop` once the device has played everything before it.
        case ttsStop = "s"
        /// Close the socket; payload "code reason".
        case close = "c"
    }

    public struct Item: Sendable, Equatable {
        public var sessionId: String
        public var kind: Kind
        /// The turn the item belongs to (from 1): after an abort the gateway drops what is left of that
        /// turn. 0: outside any turn (alerts, closes), never dropped.
        public var turn: Int64
        public var payload: [UInt8]

        public init(sessionId: String, kind: Kind, turn: Int64, payload: [UInt8]) {
            self.sessionId = sessionId
            self.kind = kind
            self.turn = turn
            self.payload = payload
        }
    }

    /// `<session> <kind> <turn>\n<payload>`.
    public static func encode(_ item: Item) -> [UInt8] {
        Array("\(item.sessionId) \(item.kind.rawValue) \(item.turn)\n".utf8) + item.payload
    }

    public static func decode(_ bytes: [UInt8]) -> Item? {
        guard let newline = bytes.firstIndex(of: 0x0A) else { return nil }
        let header = String(decoding: bytes[..<newline], as: UTF8.self).split(separator: " ")
        guard header.count == 3, let kind = Kind(rawValue: String(header[1])), let turn = Int64(header[2]) else {
            return nil
        }
        return Item(sessionId: String(header[0]), kind: kind, turn: turn, payload: Array(bytes[(newline + 1)...]))
    }
}
