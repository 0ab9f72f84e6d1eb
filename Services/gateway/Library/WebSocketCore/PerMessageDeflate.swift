import CompressNIO
import Foundation
import NIOCore
import NIOPosix

/// permessage-deflate (RFC 7692) as the gateway speaks it: both directions without context takeover,
/// so every message is compressed on its own. The same compressed bytes then suit every follower of
/// a channel, and the zlib state lives once per event loop instead of once per connection (a
/// context pair per browser connection costs ≈ 90 KB while it idles).
struct DeflateParameters: Equatable, Sendable {
    /// The window the server compresses with (the client may ask for a smaller one).
    var serverWindowBits: Int32 = 15

    /// The response to a client's `Sec-WebSocket-Extensions` offers: the first permessage-deflate offer
    /// whose parameters the gateway can honour, or nil (the connection then goes uncompressed).
    static func negotiate(offers headerValues: [String]) -> (parameters: DeflateParameters, response: String)? {
        for offer in headerValues.flatMap({ $0.split(separator: ",") }) {
            let parts = offer.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.first?.lowercased() == "permessage-deflate" else { continue }
            var parameters = DeflateParameters()
            var response = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
            var acceptable = true
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1).map {
                    $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                }
                switch pair[0].lowercased() {
                case "server_no_context_takeover", "client_no_context_takeover":
                    continue
                case "client_max_window_bits":
                    // The client's own window; any size inflates with the 15-bit one used here.
                    if pair.count == 2, Int32(pair[1]).map({ !(8...15).contains($0) }) ?? true { acceptable = false }
                case "server_max_window_bits":
                    // zlib's raw deflate cannot make an 8-bit window: decline such an offer.
                    guard pair.count == 2, let bits = Int32(pair[1]), (9...15).contains(bits) else {
                        acceptable = false
                        continue
                    }
                    parameters.serverWindowBits = bits
                    response += "; server_max_window_bits=\(bits)"
                default:
                    acceptable = false
                }
            }
            if acceptable { return (parameters, response) }
        }
        return nil
    }
}

/// The deflate and inflate state of one event loop, reset for every message. Only ever used on its loop.
final class LoopDeflater {
    /// Frames smaller than this go uncompressed: on a short JSON frame deflate saves a few hundred bytes
    /// at the cost of CPU on both ends (the same threshold as Node's `ws` library).
    static let minimumCompressedSize = 1024

    private var compressors: [Int32: ZlibCompressor] = [:]
    private let inflater: ZlibDecompressor

    private init() throws {
        inflater = try ZlibDecompressor(algorithm: .deflate, windowSize: 15)
    }

    // ThreadSpecificVariable is thread-safe; each value is only touched by its own thread.
    nonisolated(unsafe) private static let perThread = ThreadSpecificVariable<LoopDeflater>()

    /// The deflater of the calling event loop's thread.
    static var current: LoopDeflater? {
        if let existing = perThread.currentValue { return existing }
        guard let made = try? LoopDeflater() else { return nil }
        perThread.currentValue = made
        return made
    }

    /// `payload` as one compressed message (the trailing 00 00 ff ff removed, RFC 7692 §7.2.1).
    func compress(_ payload: ByteBuffer, windowBits: Int32, allocator: ByteBufferAllocator) throws -> ByteBuffer {
        let compressor: ZlibCompressor
        if let existing = compressors[windowBits] {
            compressor = existing
        } else {
            // Memory level 8 and the window asked for: the state is made once per loop, not per connection.
            compressor = try ZlibCompressor(
                algorithm: .deflate,
                configuration: .init(windowSize: windowBits, compressionLevel: 6, memoryLevel: 8, strategy: .default))
            compressors[windowBits] = compressor
        }
        try compressor.reset()
        var input = payload
        var output = allocator.buffer(capacity: compressor.maxSize(from: input))
        try compressor.deflate(from: &input, to: &output, flush: .sync)
        if output.readableBytes >= 4, output.getBytes(at: output.writerIndex - 4, length: 4) == [0, 0, 0xFF, 0xFF] {
            output.moveWriterIndex(to: output.writerIndex - 4)
        }
        return output
    }

    /// One compressed message inflated, at most `limit` bytes; throws past it.
    func inflate(_ payload: ByteBuffer, limit: Int, allocator: ByteBufferAllocator) throws -> ByteBuffer {
        try inflater.reset()
        var input = payload
        input.writeBytes([0, 0, 0xFF, 0xFF])
        var output = allocator.buffer(capacity: min(limit, max(256, payload.readableBytes * 4)))
        while true {
            do {
                try inflater.inflate(from: &input, to: &output)
                return output
            } catch let error as CompressNIOError where error == .bufferOverflow {
                guard output.capacity < limit else { throw WebSocketCoreError.messageTooLarge }
                output.reserveCapacity(min(limit, output.capacity * 2))
            }
        }
    }
}

enum WebSocketCoreError: Error {
    case messageTooLarge
}
