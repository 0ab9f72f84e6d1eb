import Foundation

/// What the notifier needs of a `client.event` envelope to publish it: the fields it routes by, and
/// the payload's `data` as the producer's bytes. Reading only these (instead of `JSONDecoder` over the
/// whole envelope, then `JSONEncoder` over the frame) was most of the notifier's CPU per event.
public struct ClientEventRoute: Sendable, Equatable {
    public var id: UUID
    /// The envelope's time, µs since the epoch.
    public var time: Int64
    public var channel: Channel
    public var frameType: String
    public var ephemeral: Bool
    /// The JSON value of `payload.data`, byte for byte as in the envelope.
    public var data: ArraySlice<UInt8>

    /// Reads `bytes` (an encoded `Envelope<ClientEvent>`), with the checks `EnvelopeCodec.decode` makes:
    /// the type must be `client.event`, its schema version one this build knows.
    public init(envelope bytes: [UInt8]) throws {
        var id: UUID?
        var type: String?
        var schemaVersion: Int64?
        var time: Int64?
        var channel: String?
        var frameType: String?
        var ephemeral: Bool?
        var data: Range<Int>?
        do {
            try bytes.withUnsafeBufferPointer { buffer in
                var scanner = JSONScanner(buffer)
                try scanner.object { scanner, key in
                    switch key {
                    case "id": id = UUID(uuidString: try scanner.string())
                    case "type": type = try scanner.string()
                    case "schemaVersion": schemaVersion = try scanner.integer()
                    case "time": time = try scanner.integer()
                    case "payload":
                        try scanner.object { scanner, key in
                            switch key {
                            case "channel": channel = try scanner.string()
                            case "frameType": frameType = try scanner.string()
                            case "ephemeral": ephemeral = try scanner.bool()
                            case "data": data = try scanner.skipValue()
                            default: _ = try scanner.skipValue()
                            }
                        }
                    default: _ = try scanner.skipValue()
                    }
                }
                try scanner.end()
            }
        } catch let error as JSONScanner.Failure {
            throw ContractError(.malformedEnvelope, "cannot read \(ClientEvent.eventType): \(error.reason)")
        }
        guard let id, let type, let schemaVersion, let time, let channel, let frameType, let ephemeral, let data else {
            throw ContractError(
                .malformedEnvelope, "cannot read \(ClientEvent.eventType): a field is missing or invalid")
        }
        guard type == ClientEvent.eventType else {
            throw ContractError(.unexpectedType, "expected \(ClientEvent.eventType), got \(type)")
        }
        guard schemaVersion <= ClientEvent.schemaVersion else {
            throw ContractError(
                .unsupportedSchemaVersion,
                "\(ClientEvent.eventType) v\(schemaVersion) is newer than v\(ClientEvent.schemaVersion)")
        }
        guard let parsed = Channel(channel) else {
            throw ContractError(.malformedEnvelope, "cannot read \(ClientEvent.eventType): bad channel \(channel)")
        }
        self.id = id
        self.time = time
        self.channel = parsed
        self.frameType = frameType
        self.ephemeral = ephemeral
        self.data = bytes[data]
    }

    /// The client frame, the bytes `FrameEncoding.json` makes of
    /// `ServerFrame(id:, type: frameType, timestamp: time / 1000, data:, channel:)`: sorted keys, `data`
    /// copied as is (the envelope was written in the same style).
    public func frameJSON() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + frameType.utf8.count + 160)
        out.append(contentsOf: #"{"channel":"#.utf8)
        JSONScanner.appendString(channel.description, to: &out)
        out.append(contentsOf: #","data":"#.utf8)
        out.append(contentsOf: data)
        out.append(contentsOf: #","id":""#.utf8)
        Self.appendLowercasedUUID(id, to: &out)
        out.append(contentsOf: #"","status":"success","timestamp":"#.utf8)
        out.append(contentsOf: String(time / 1000).utf8)
        out.append(contentsOf: #","type":"#.utf8)
        JSONScanner.appendString(frameType, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    private static func appendLowercasedUUID(_ id: UUID, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        withUnsafeBytes(of: id.uuid) { bytes in
            for (index, byte) in bytes.enumerated() {
                if index == 4 || index == 6 || index == 8 || index == 10 { out.append(UInt8(ascii: "-")) }
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
    }
}

/// A forward-only reader of one JSON text that decodes only what it is asked for and skips the rest.
struct JSONScanner {
    struct Failure: Error {
        var reason: String
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private(set) var index = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) {
        self.bytes = bytes
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    private mutating func peek() throws -> UInt8 {
        skipWhitespace()
        guard index < bytes.count else { throw Failure(reason: "unexpected end at byte \(index)") }
        return bytes[index]
    }

    private mutating func expect(_ byte: UInt8) throws {
        guard try peek() == byte else {
            throw Failure(reason: "expected '\(Character(Unicode.Scalar(byte)))' at byte \(index)")
        }
        index += 1
    }

    /// Only whitespace may follow.
    mutating func end() throws {
        skipWhitespace()
        guard index == bytes.count else { throw Failure(reason: "trailing bytes at \(index)") }
    }

    /// Calls `member` with each key of an object; `member` must consume the key's value.
    mutating func object(_ member: (inout JSONScanner, String) throws -> Void) throws {
        try expect(UInt8(ascii: "{"))
        if try peek() == UInt8(ascii: "}") {
            index += 1
            return
        }
        while true {
            let key = try string()
            try expect(UInt8(ascii: ":"))
            try member(&self, key)
            switch try peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return
            default: throw Failure(reason: "expected ',' or '}' at byte \(index)")
            }
        }
    }

    mutating func string() throws -> String {
        let (range, escaped) = try rawString()
        let raw = UnsafeBufferPointer(rebasing: bytes[range])
        return escaped ? try Self.unescape(raw) : String(decoding: raw, as: UTF8.self)
    }

    /// A string's bytes between its quotes, and whether they hold escapes; nothing is decoded.
    private mutating func rawString() throws -> (Range<Int>, escaped: Bool) {
        try expect(UInt8(ascii: "\""))
        let start = index
        var escaped = false
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\""):
                index += 1
                return (start..<index - 1, escaped)
            case UInt8(ascii: "\\"):
                escaped = true
                index += 2
            case 0x00..<0x20:
                throw Failure(reason: "control character in a string at byte \(index)")
            default:
                index += 1
            }
        }
        throw Failure(reason: "unterminated string")
    }

    mutating func integer() throws -> Int64 {
        let range = try number()
        guard let value = Int64(String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)) else {
            throw Failure(reason: "expected an integer at byte \(range.lowerBound)")
        }
        return value
    }

    mutating func bool() throws -> Bool {
        if try literal("true") { return true }
        if try literal("false") { return false }
        throw Failure(reason: "expected true or false at byte \(index)")
    }

    /// Skips one value of any kind and returns where it was.
    @discardableResult
    mutating func skipValue() throws -> Range<Int> {
        let first = try peek()
        let start = index
        switch first {
        case UInt8(ascii: "{"):
            try object { scanner, _ in try scanner.skipValue() }
        case UInt8(ascii: "["):
            index += 1
            if try peek() == UInt8(ascii: "]") {
                index += 1
            } else {
                while true {
                    try skipValue()
                    let next = try peek()
                    index += 1
                    if next == UInt8(ascii: "]") { break }
                    guard next == UInt8(ascii: ",") else {
                        throw Failure(reason: "expected ',' or ']' at byte \(index - 1)")
                    }
                }
            }
        case UInt8(ascii: "\""):
            _ = try rawString()
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            _ = try bool()
        case UInt8(ascii: "n"):
            guard try literal("null") else { throw Failure(reason: "expected null at byte \(index)") }
        default:
            _ = try number()
        }
        return start..<index
    }

    private mutating func number() throws -> Range<Int> {
        skipWhitespace()
        let start = index
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."),
                UInt8(ascii: "e"), UInt8(ascii: "E"):
                index += 1
            default:
                guard index > start else { throw Failure(reason: "unexpected byte at \(index)") }
                return start..<index
            }
        }
        guard index > start else { throw Failure(reason: "unexpected end at byte \(index)") }
        return start..<index
    }

    private mutating func literal(_ word: StaticString) throws -> Bool {
        skipWhitespace()
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return false }
        index += count
        return true
    }

    private static func unescape(_ raw: UnsafeBufferPointer<UInt8>) throws -> String {
        var scalars = String.UnicodeScalarView()
        var utf8: [UInt8] = []
        var index = 0
        func flush() {
            if !utf8.isEmpty {
                scalars.append(contentsOf: String(decoding: utf8, as: UTF8.self).unicodeScalars)
                utf8.removeAll(keepingCapacity: true)
            }
        }
        func hex4(_ at: Int) throws -> UInt32 {
            guard at + 4 <= raw.count,
                let value = UInt32(
                    String(decoding: UnsafeBufferPointer(rebasing: raw[at..<at + 4]), as: UTF8.self), radix: 16)
            else { throw Failure(reason: "bad \\u escape") }
            return value
        }
        while index < raw.count {
            let byte = raw[index]
            guard byte == UInt8(ascii: "\\") else {
                utf8.append(byte)
                index += 1
                continue
            }
            guard index + 1 < raw.count else { throw Failure(reason: "bad escape") }
            let code = raw[index + 1]
            index += 2
            switch code {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(code)
            case UInt8(ascii: "b"): utf8.append(0x08)
            case UInt8(ascii: "f"): utf8.append(0x0C)
            case UInt8(ascii: "n"): utf8.append(0x0A)
            case UInt8(ascii: "r"): utf8.append(0x0D)
            case UInt8(ascii: "t"): utf8.append(0x09)
            case UInt8(ascii: "u"):
                var value = try hex4(index)
                index += 4
                if (0xD800..<0xDC00).contains(value), index + 6 <= raw.count, raw[index] == UInt8(ascii: "\\"),
                    raw[index + 1] == UInt8(ascii: "u")
                {
                    let low = try hex4(index + 2)
                    if (0xDC00..<0xE000).contains(low) {
                        value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
                        index += 6
                    }
                }
                flush()
                scalars.append(Unicode.Scalar(value) ?? "\u{FFFD}")
            default: throw Failure(reason: "bad escape")
            }
        }
        flush()
        return String(scalars)
    }

    /// Appends `string` as a JSON string the way `FrameEncoding` writes it (slashes unescaped).
    static func appendString(_ string: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case 0x0A: out.append(contentsOf: #"\n"#.utf8)
            case 0x0D: out.append(contentsOf: #"\r"#.utf8)
            case 0x09: out.append(contentsOf: #"\t"#.utf8)
            case 0x08: out.append(contentsOf: #"\b"#.utf8)
            case 0x0C: out.append(contentsOf: #"\f"#.utf8)
            case 0x00..<0x20:
                out.append(contentsOf: [
                    UInt8(ascii: "\\"), UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0x0F)],
                ])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
