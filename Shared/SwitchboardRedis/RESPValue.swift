/// A Redis reply.
public enum RESPValue: Sendable, Hashable {
    case simpleString(String)
    case bulkString([UInt8])
    case error(String)
    case integer(Int64)
    case array([RESPValue])
    case null

    public var string: String? {
        switch self {
        case .simpleString(let value): return value
        case .bulkString(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .integer(let value): return String(value)
        default: return nil
        }
    }

    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let bytes): return bytes
        case .simpleString(let value): return Array(value.utf8)
        default: return nil
        }
    }

    public var integer: Int64? {
        switch self {
        case .integer(let value): return value
        case .bulkString, .simpleString: return string.flatMap { Int64($0) }
        default: return nil
        }
    }

    public var array: [RESPValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    public var isNull: Bool { self == .null }
}

/// One argument of a Redis command: binary-safe bytes.
public struct RedisArgument: Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByStringInterpolation {
    public var bytes: [UInt8]

    public init(_ string: String) { bytes = Array(string.utf8) }
    public init(bytes: [UInt8]) { self.bytes = bytes }
    public init(_ integer: some BinaryInteger) { bytes = Array(String(integer).utf8) }
    public init(stringLiteral value: String) { self.init(value) }
}

public struct RedisError: Error, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value { case connection, server, protocolViolation, closed, noScript }
        private let value: Value
        /// Could not connect, or the connection dropped before the reply.
        public static let connection = Code(value: .connection)
        /// Redis answered with an error reply.
        public static let server = Code(value: .server)
        public static let protocolViolation = Code(value: .protocolViolation)
        public static let closed = Code(value: .closed)
        /// The server does not know the script (it restarted or its script cache was flushed).
        public static let noScript = Code(value: .noScript)
        public var description: String { "\(value)" }
    }

    public var code: Code
    public var reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { "RedisError(\(code)): \(reason)" }
}
