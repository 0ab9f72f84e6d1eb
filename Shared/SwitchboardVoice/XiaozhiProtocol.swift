import Crypto
import Foundation
import SwitchboardContracts

/// The xiaozhi device protocol (docs/voice.md): the JSON messages, the binary audio framings of
/// protocol versions 1–3 and the reference server's HMAC token. Pure values, no I/O.
public enum Xiaozhi {
    /// Audio parameters of a hello.
    public struct AudioParams: Codable, Sendable, Equatable {
        public var format: String
        public var sampleRate: Int
        public var channels: Int
        public var frameDuration: Int

        public init(format: String = "opus", sampleRate: Int, channels: Int = 1, frameDuration: Int = 60) {
            self.format = format
            self.sampleRate = sampleRate
            self.channels = channels
            self.frameDuration = frameDuration
        }

        enum CodingKeys: String, CodingKey {
            case format, channels
            case sampleRate = "sample_rate"
            case frameDuration = "frame_duration"
        }

        public static let uplink = AudioParams(sampleRate: 16_000)
        public static let downlink = AudioParams(sampleRate: 24_000)
    }

    public enum ListenMode: String, Codable, Sendable, Equatable {
        /// The server's VAD ends the utterance.
        case auto
        /// The device ends the utterance with `listen stop`.
        case manual
        /// Full duplex: the server keeps listening while it speaks (barge-in by voice).
        case realtime
    }

    public enum ListenState: String, Codable, Sendable, Equatable {
        case start, stop, detect
    }

    public enum TTSState: String, Codable, Sendable, Equatable {
        case start, stop
        case sentenceStart = "sentence_start"
        /// Obsolete in the firmware; still decoded.
        case sentenceEnd = "sentence_end"
    }

    /// Any JSON message of either direction. Fields absent from a type are nil; unknown keys (`iot`
    /// descriptors, `features`) survive in `extra` only where the pipeline needs them.
    public struct Message: Codable, Sendable, Equatable {
        public var type: String
        public var sessionId: String?
        public var version: Int?
        public var transport: String?
        public var audioParams: AudioParams?
        public var features: [String: Bool]?
        public var state: String?
        public var mode: ListenMode?
        public var text: String?
        public var reason: String?
        public var emotion: String?
        public var payload: JSONObjectValue?
        public var timestamp: Int64?
        public var status: String?
        public var message: String?
        public var command: String?

        public init(type: String, sessionId: String? = nil) {
            self.type = type
            self.sessionId = sessionId
        }

        enum CodingKeys: String, CodingKey {
            case type, version, transport, features, state, mode, text, reason, emotion, payload, timestamp, status,
                message,
                command
            case sessionId = "session_id"
            case audioParams = "audio_params"
        }

        // MARK: builders for what the server sends

        public static func serverHello(sessionId: String, audio: AudioParams = .downlink) -> Message {
            var message = Message(type: "hello", sessionId: sessionId)
            message.transport = "websocket"
            message.audioParams = audio
            return message
        }

        public static func stt(_ text: String, sessionId: String) -> Message {
            var message = Message(type: "stt", sessionId: sessionId)
            message.text = text
            return message
        }

        public static func llm(emotion: String, text: String, sessionId: String) -> Message {
            var message = Message(type: "llm", sessionId: sessionId)
            message.emotion = emotion
            message.text = text
            return message
        }

        public static func tts(_ state: TTSState, text: String? = nil, sessionId: String) -> Message {
            var message = Message(type: "tts", sessionId: sessionId)
            message.state = state.rawValue
            message.text = text
            return message
        }

        public static func pong(timestamp: Int64, sessionId: String?) -> Message {
            var message = Message(type: "pong", sessionId: sessionId)
            message.timestamp = timestamp
            return message
        }

        public static func alert(status: String, message text: String, sessionId: String?) -> Message {
            var message = Message(type: "alert", sessionId: sessionId)
            message.status = status
            message.message = text
            message.emotion = "sad"
            return message
        }

        // MARK: builders for what the device sends (the tests' simulator)

        public static func deviceHello(audio: AudioParams = .uplink, mcp: Bool = false) -> Message {
            var message = Message(type: "hello")
            message.version = 1
            message.transport = "websocket"
            message.features = ["mcp": mcp]
            message.audioParams = audio
            return message
        }

        public static func listen(
            _ state: ListenState, mode: ListenMode? = nil, text: String? = nil, sessionId: String?
        ) -> Message {
            var message = Message(type: "listen", sessionId: sessionId)
            message.state = state.rawValue
            message.mode = mode
            message.text = text
            return message
        }

        public static func abort(reason: String? = nil, sessionId: String?) -> Message {
            var message = Message(type: "abort", sessionId: sessionId)
            message.reason = reason
            return message
        }

        public var listenState: ListenState? { type == "listen" ? state.flatMap(ListenState.init(rawValue:)) : nil }
        public var ttsState: TTSState? { type == "tts" ? state.flatMap(TTSState.init(rawValue:)) : nil }

        public func json() -> String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            // Encoding these plain fields cannot fail.
            return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
        }

        public static func parse(_ text: String) throws(ProtocolError) -> Message {
            guard text.utf8.count <= maxJSONBytes else {
                throw ProtocolError(.tooLarge, "a JSON message is at most \(maxJSONBytes) bytes")
            }
            do {
                return try JSONDecoder().decode(Message.self, from: Data(text.utf8))
            } catch {
                throw ProtocolError(.malformed, "not a xiaozhi JSON message: a JSON object with a string \"type\"")
            }
        }
    }

    /// Text messages larger than this are refused (MCP payloads included).
    public static let maxJSONBytes = 64 * 1024
    /// One 60 ms Opus packet is at most 3 × 1275 bytes; anything larger is not audio.
    public static let maxAudioPacketBytes = 3 * 1275

    public struct ProtocolError: Error, Equatable, CustomStringConvertible {
        public struct Code: Hashable, Sendable, CustomStringConvertible {
            private enum Value { case malformed, tooLarge, unsupportedVersion }
            private let value: Value
            public static let malformed = Code(value: .malformed)
            public static let tooLarge = Code(value: .tooLarge)
            public static let unsupportedVersion = Code(value: .unsupportedVersion)
            public var description: String { "\(value)" }
        }

        public var code: Code
        public var reason: String

        public init(_ code: Code, _ reason: String) {
            self.code = code
            self.reason = reason
        }

        public var description: String { "\(code): \(reason)" }
    }

    /// What a binary WebSocket frame carries.
    public enum BinaryPayload: Sendable, Equatable {
        case audio([UInt8], timestamp: UInt32)
        case json(String)
    }

    /// The binary framing of protocol versions 1 (raw Opus), 2 (16-byte header) and 3 (4-byte header).
    public struct BinaryProtocol: Sendable, Equatable {
        public let version: Int

        public init(version: Int) throws(ProtocolError) {
            guard (1...3).contains(version) else {
                throw ProtocolError(.unsupportedVersion, "Protocol-Version must be 1, 2 or 3, got \(version)")
            }
            self.version = version
        }

        public func encodeAudio(_ packet: [UInt8], timestamp: UInt32 = 0) -> [UInt8] {
            switch version {
            case 1: return packet
            case 2: return Self.header2(type: 0, timestamp: timestamp, size: packet.count) + packet
            default: return [0, 0, UInt8(packet.count >> 8 & 0xFF), UInt8(packet.count & 0xFF)] + packet
            }
        }

        public func encodeJSON(_ text: String) -> [UInt8] {
            let bytes = Array(text.utf8)
            switch version {
            case 1: return bytes
            case 2: return Self.header2(type: 1, timestamp: 0, size: bytes.count) + bytes
            default: return [1, 0, UInt8(bytes.count >> 8 & 0xFF), UInt8(bytes.count & 0xFF)] + bytes
            }
        }

        public func decode(_ frame: [UInt8]) throws(ProtocolError) -> BinaryPayload {
            let type: UInt16
            let timestamp: UInt32
            let payload: ArraySlice<UInt8>
            switch version {
            case 1:
                type = 0
                timestamp = 0
                payload = frame[...]
            case 2:
                guard frame.count >= 16 else {
                    throw ProtocolError(.malformed, "a version 2 frame has a 16-byte header")
                }
                let frameVersion = Self.u16(frame, 0)
                guard frameVersion == 2 else {
                    throw ProtocolError(.malformed, "version 2 header says version \(frameVersion)")
                }
                type = Self.u16(frame, 2)
                timestamp = Self.u32(frame, 8)
                let size = Int(Self.u32(frame, 12))
                guard size == frame.count - 16 else {
                    throw ProtocolError(
                        .malformed, "header says \(size) payload bytes, the frame has \(frame.count - 16)")
                }
                payload = frame[16...]
            default:
                guard frame.count >= 4 else { throw ProtocolError(.malformed, "a version 3 frame has a 4-byte header") }
                type = UInt16(frame[0])
                timestamp = 0
                let size = Int(Self.u16(frame, 2))
                guard size == frame.count - 4 else {
                    throw ProtocolError(
                        .malformed, "header says \(size) payload bytes, the frame has \(frame.count - 4)")
                }
                payload = frame[4...]
            }
            switch type {
            case 0:
                guard !payload.isEmpty else { throw ProtocolError(.malformed, "an audio frame without audio") }
                guard payload.count <= maxAudioPacketBytes else {
                    throw ProtocolError(
                        .tooLarge,
                        "an Opus packet of 60 ms is at most \(maxAudioPacketBytes) bytes, got \(payload.count)")
                }
                return .audio(Array(payload), timestamp: timestamp)
            case 1:
                return .json(String(decoding: payload, as: UTF8.self))
            default:
                throw ProtocolError(.malformed, "unknown binary frame type \(type)")
            }
        }

        static func header2(type: UInt16, timestamp: UInt32, size: Int) -> [UInt8] {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(16)
            func append16(_ value: UInt16) { bytes += [UInt8(value >> 8), UInt8(value & 0xFF)] }
            func append32(_ value: UInt32) {
                bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
            }
            append16(2)
            append16(type)
            append32(0)
            append32(timestamp)
            append32(UInt32(size))
            return bytes
        }

        static func u16(_ bytes: [UInt8], _ at: Int) -> UInt16 { UInt16(bytes[at]) << 8 | UInt16(bytes[at + 1]) }
        static func u32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
            UInt32(bytes[at]) << 24 | UInt32(bytes[at + 1]) << 16 | UInt32(bytes[at + 2]) << 8 | UInt32(bytes[at + 3])
        }
    }

    /// The reference server's device token: `base64url(HMAC-SHA256(secret, "client|device|ts")).ts`.
    public struct DeviceToken: Sendable {
        public static let lifetimeSeconds: Int64 = 30 * 24 * 3600
        private let key: SymmetricKey

        public init(secret: String) {
            key = SymmetricKey(data: Data(secret.utf8))
        }

        public init(key: SymmetricKey) {
            self.key = key
        }

        public func mint(clientId: String, deviceId: String, at timestamp: Int64) -> String {
            "\(signature(clientId: clientId, deviceId: deviceId, timestamp: timestamp)).\(timestamp)"
        }

        /// True for a token minted for this client and device within its lifetime.
        public func verify(_ token: String, clientId: String, deviceId: String, now: Int64) -> Bool {
            guard let dot = token.lastIndex(of: "."), let timestamp = Int64(token[token.index(after: dot)...]) else {
                return false
            }
            guard now - timestamp <= Self.lifetimeSeconds, timestamp - now <= 300 else { return false }
            let expected = signature(clientId: clientId, deviceId: deviceId, timestamp: timestamp)
            // Constant time: compare the MACs, not the strings.
            return Data(expected.utf8).withUnsafeBytes { lhs in
                Data(token[..<dot].utf8).withUnsafeBytes { rhs in
                    lhs.count == rhs.count && zip(lhs, rhs).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
                }
            }
        }

        func signature(clientId: String, deviceId: String, timestamp: Int64) -> String {
            let mac = HMAC<SHA256>.authenticationCode(
                for: Data("\(clientId)|\(deviceId)|\(timestamp)".utf8), using: key)
            return Data(mac).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }

        /// Tokens of this format have no dots but the one before the timestamp; JWTs have two.
        public static func looksLikeDeviceToken(_ token: String) -> Bool {
            token.split(separator: ".", omittingEmptySubsequences: false).count == 2
        }
    }
}

/// An MCP payload or any JSON object carried opaquely (JSON-RPC 2.0 inside `mcp`).
public typealias JSONObjectValue = JSONValueBox

/// A JSON value kept as its canonical text so messages stay `Equatable` and `Sendable`.
public struct JSONValueBox: Codable, Sendable, Equatable {
    public var json: String

    public init(json: String) { self.json = json }

    public init(from decoder: any Decoder) throws {
        let value = try decoder.singleValueContainer().decode(JSONValue.self)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        json = String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(try JSONDecoder().decode(JSONValue.self, from: Data(json.utf8)))
    }
}
