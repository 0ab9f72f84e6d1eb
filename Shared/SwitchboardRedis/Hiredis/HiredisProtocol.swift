import CHiredis

// Every call into hiredis lives in this folder: it formats commands and parses replies; the sockets are
// SwiftNIO's, so no Redis call ever blocks a thread.

enum HiredisProtocol {
    /// The RESP bytes of one command.
    static func format(_ arguments: [RedisArgument]) -> [UInt8] {
        var pointers: [UnsafePointer<CChar>?] = []
        var lengths: [Int] = []
        pointers.reserveCapacity(arguments.count)
        lengths.reserveCapacity(arguments.count)
        // Keep every argument's bytes alive until redisFormatCommandArgv has copied them.
        let buffers = arguments.map { argument -> UnsafeMutableBufferPointer<CChar> in
            let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: max(argument.bytes.count, 1))
            argument.bytes.withUnsafeBytes { source in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: source)
            }
            return buffer
        }
        defer { buffers.forEach { $0.deallocate() } }
        for (index, buffer) in buffers.enumerated() {
            pointers.append(UnsafePointer(buffer.baseAddress))
            lengths.append(arguments[index].bytes.count)
        }
        var target: UnsafeMutablePointer<CChar>?
        let length = redisFormatCommandArgv(&target, Int32(arguments.count), &pointers, lengths)
        guard length > 0, let target else { return [] }
        defer { redisFreeCommand(target) }
        return Array(UnsafeRawBufferPointer(start: target, count: Int(length)))
    }
}

/// An incremental RESP parser over hiredis' reader. Not thread-safe: owned by one channel handler.
final class HiredisReader {
    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        reader = redisReaderCreate()
    }

    deinit {
        redisReaderFree(reader)
    }

    func feed(_ bytes: UnsafeRawBufferPointer) throws(RedisError) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if redisReaderFeed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count) != REDIS_OK {
            throw RedisError(.protocolViolation, readerError)
        }
    }

    /// The next complete reply, or nil when more bytes are needed.
    func nextReply() throws(RedisError) -> RESPValue? {
        var raw: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &raw) == REDIS_OK else {
            throw RedisError(.protocolViolation, readerError)
        }
        guard let raw else { return nil }
        defer { freeReplyObject(raw) }
        return Self.convert(raw.assumingMemoryBound(to: redisReply.self))
    }

    private var readerError: String {
        withUnsafeBytes(of: reader.pointee.errstr) { bytes in
            String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let value = reply.pointee
        func text() -> [UInt8] {
            guard let pointer = value.str else { return [] }
            return Array(UnsafeRawBufferPointer(start: pointer, count: Int(value.len)))
        }
        switch value.type {
        case REDIS_REPLY_STRING: return .bulkString(text())
        case REDIS_REPLY_STATUS: return .simpleString(String(decoding: text(), as: UTF8.self))
        case REDIS_REPLY_ERROR: return .error(String(decoding: text(), as: UTF8.self))
        case REDIS_REPLY_INTEGER: return .integer(value.integer)
        case REDIS_REPLY_NIL: return .null
        case REDIS_REPLY_ARRAY:
            var elements: [RESPValue] = []
            elements.reserveCapacity(Int(value.elements))
            for index in 0..<Int(value.elements) {
                if let element = value.element[index] { elements.append(convert(element)) }
            }
            return .array(elements)
        default:
            return .null
        }
    }
}
