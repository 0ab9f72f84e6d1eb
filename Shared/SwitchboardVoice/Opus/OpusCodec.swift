import COpus

/// Every libopus call of Switchboard lives in this folder; the rest sees `[Int16]` and `[UInt8]`.
public struct OpusError: Error, CustomStringConvertible, Equatable {
    public var code: Int32
    public var operation: String

    public var description: String {
        let text = opus_strerror(code).map { String(cString: $0) } ?? "unknown"
        return "opus \(operation) failed (\(code)): \(text)"
    }
}

/// The xiaozhi audio shape: mono, 60 ms frames, 16 kHz up and 24 kHz down.
public struct AudioFormat: Sendable, Equatable {
    public var sampleRate: Int
    public var frameDurationMilliseconds: Int

    public init(sampleRate: Int, frameDurationMilliseconds: Int = 60) {
        self.sampleRate = sampleRate
        self.frameDurationMilliseconds = frameDurationMilliseconds
    }

    public var samplesPerFrame: Int { sampleRate * frameDurationMilliseconds / 1000 }

    public static let uplink = AudioFormat(sampleRate: 16_000)
    public static let downlink = AudioFormat(sampleRate: 24_000)
}

/// One Opus encoder. Not thread-safe (libopus state): owned by one session or task at a time.
public final class OpusEncoder {
    private let handle: OpaquePointer
    public let format: AudioFormat
    /// The largest packet we ask libopus for (its own limit for one frame is 1275 bytes × 3 for 60 ms).
    static let maxPacketBytes = 4000

    public init(format: AudioFormat, bitrate: Int32 = 24_000, complexity: Int32 = 10) throws(OpusError) {
        var error: Int32 = 0
        guard let handle = opus_encoder_create(Int32(format.sampleRate), 1, OPUS_APPLICATION_VOIP, &error),
            error == OPUS_OK
        else { throw OpusError(code: error, operation: "encoder_create") }
        self.handle = handle
        self.format = format
        _ = switchboard_opus_set_bitrate(handle, bitrate)
        _ = switchboard_opus_set_complexity(handle, complexity)
        _ = switchboard_opus_set_signal_voice(handle)
    }

    deinit { opus_encoder_destroy(handle) }

    /// Encodes exactly one frame (`format.samplesPerFrame` samples; shorter input is padded with silence).
    public func encode(_ samples: ArraySlice<Int16>) throws(OpusError) -> [UInt8] {
        var frame = Array(samples.prefix(format.samplesPerFrame))
        if frame.count < format.samplesPerFrame {
            frame += repeatElement(0, count: format.samplesPerFrame - frame.count)
        }
        var packet = [UInt8](repeating: 0, count: Self.maxPacketBytes)
        let written = frame.withUnsafeBufferPointer { input in
            packet.withUnsafeMutableBufferPointer { output in
                opus_encode(
                    handle, input.baseAddress!, Int32(format.samplesPerFrame), output.baseAddress!,
                    Int32(Self.maxPacketBytes))
            }
        }
        guard written > 0 else { throw OpusError(code: written, operation: "encode") }
        return Array(packet.prefix(Int(written)))
    }

    /// Cuts `samples` into frames and encodes each (the last one padded).
    public func encodeAll(_ samples: [Int16]) throws(OpusError) -> [[UInt8]] {
        var packets: [[UInt8]] = []
        var start = 0
        while start < samples.count {
            packets.append(try encode(samples[start..<min(samples.count, start + format.samplesPerFrame)]))
            start += format.samplesPerFrame
        }
        return packets
    }
}

/// One Opus decoder. Not thread-safe: owned by one session at a time.
public final class OpusDecoder {
    private let handle: OpaquePointer
    public let format: AudioFormat
    /// 120 ms is the longest Opus packet; decoding into less would fail on a valid long packet.
    private var buffer: [Int16]

    public init(format: AudioFormat) throws(OpusError) {
        var error: Int32 = 0
        guard let handle = opus_decoder_create(Int32(format.sampleRate), 1, &error), error == OPUS_OK else {
            throw OpusError(code: error, operation: "decoder_create")
        }
        self.handle = handle
        self.format = format
        self.buffer = [Int16](repeating: 0, count: format.sampleRate * 120 / 1000)
    }

    deinit { opus_decoder_destroy(handle) }

    /// The PCM of one packet; a corrupt packet throws and leaves the decoder usable.
    public func decode(_ packet: [UInt8]) throws(OpusError) -> [Int16] {
        guard !packet.isEmpty else { throw OpusError(code: OPUS_BAD_ARG, operation: "decode") }
        let capacity = Int32(buffer.count)
        let decoded = packet.withUnsafeBufferPointer { input in
            buffer.withUnsafeMutableBufferPointer { output in
                opus_decode(handle, input.baseAddress, Int32(input.count), output.baseAddress!, capacity, 0)
            }
        }
        guard decoded > 0 else { throw OpusError(code: decoded, operation: "decode") }
        return Array(buffer.prefix(Int(decoded)))
    }
}
