import Foundation

/// Seed 000's own wire forms where they differ from the frames the services emit: the SSE events of
/// `…/messages/stream`, `…/roles/activity` and `/events/system`, and the character offsets of chunks.
public enum ChatCentreDialect {
    /// A text's length as chunk positions count it: UTF-16 code units, JavaScript's `String.length`
    /// (the seed's clients are TypeScript), so `text.slice(position)` lines up. The same as the
    /// character count for all CJK and Latin text; an emoji outside the BMP counts 2.
    public static func length(_ text: some StringProtocol) -> Int { text.utf16.count }

    /// The SSE event name of a frame type: the seed's names for the reply's frames, the frame type in
    /// lower case for every other (`role_status_change`, `system_status`, …).
    public static func eventName(_ frameType: String) -> String {
        switch frameType {
        case FrameType.messageStreamStart: "message_start"
        case FrameType.messageStreamChunk: "message_chunk"
        case FrameType.messageStreamEnd: "message_complete"
        default: frameType.lowercased()
        }
    }

    /// `data:` of `event: message_chunk`: the seed's `{chunk, position, total}`, plus the reply's ids.
    public struct MessageChunk: Codable, Sendable, Equatable {
        public var chunk: String
        /// Character offset of `chunk` in the reply.
        public var position: Int
        /// The seed's "not known yet".
        public var total = -1
        public var messageId: String?
        public var role: String?
    }

    /// `data:` of `event: message_complete`: the seed's `{message, metadata}` (the whole text), plus the ids.
    public struct MessageComplete: Codable, Sendable, Equatable {
        public var message: String
        public var metadata: JSONValue
        public var messageId: String?
        public var role: String?
    }

    /// What the reply's frames carry that the seed's SSE payloads are made from.
    private struct ReplyFrameData: Decodable {
        struct FinalMessage: Decodable {
            var content: String?
            var role: String?
        }
        var messageId: String?
        var role: String?
        var chunk: String?
        var position: Int?
        var finalMessage: FinalMessage?
        var metadata: JSONValue?
    }

    /// One SSE event: `id: <epoch>:<offset>` (recoverable events only), the seed's event name, and
    /// the frame's `data` as `data:` (reshaped to the seed's payload for the reply's chunks and end).
    public static func serverSentEvent(_ message: ChannelWire.Message) -> String {
        var text = message.isEphemeral ? "" : "id: \(message.position)\n"
        if !message.frameType.isEmpty { text += "event: \(eventName(message.frameType))\n" }
        return text + "data: \(data(frameType: message.frameType, frameJSON: message.frameJSON))\n\n"
    }

    /// The `data:` JSON of a frame: its `data` object as is, or the seed's payload for the reply.
    public static func data(frameType: String, frameJSON: String) -> String {
        let raw = frameData(frameJSON) ?? "{}"
        guard frameType == FrameType.messageStreamChunk || frameType == FrameType.messageStreamEnd,
            let reply = try? JSONDecoder().decode(ReplyFrameData.self, from: Data(raw.utf8))
        else { return raw }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let encoded: Data?
        if frameType == FrameType.messageStreamChunk {
            encoded = try? encoder.encode(
                MessageChunk(
                    chunk: reply.chunk ?? "", position: reply.position ?? 0, messageId: reply.messageId,
                    role: reply.role))
        } else {
            encoded = try? encoder.encode(
                MessageComplete(
                    message: reply.finalMessage?.content ?? "", metadata: reply.metadata ?? .object([:]),
                    messageId: reply.messageId,
                    role: reply.role ?? reply.finalMessage?.role))
        }
        return encoded.map { String(decoding: $0, as: UTF8.self) } ?? raw
    }

    /// The bytes of a frame's `data` value, found without decoding the rest.
    static func frameData(_ frameJSON: String) -> String? {
        let bytes = Array(frameJSON.utf8)
        var range: Range<Int>?
        try? bytes.withUnsafeBufferPointer { buffer in
            var scanner = JSONScanner(buffer)
            try scanner.object { scanner, key in
                if key == "data" { range = try scanner.skipValue() } else { _ = try scanner.skipValue() }
            }
        }
        return range.map { String(decoding: bytes[$0], as: UTF8.self) }
    }
}
