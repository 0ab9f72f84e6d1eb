/// The uplink audio a device may announce in its hello (docs/voice.md): Opus, mono, at any rate Opus
/// codes (8, 12, 16, 24 or 48 kHz), in frames of 20 to 120 ms. The voice-worker decodes at the device's
/// rate and hands its VAD and ASR 16 kHz in 60 ms frames (`UplinkFramer`), so nothing after the decoder
/// depends on what the device chose. The downlink stays 24 kHz, 60 ms: the server's hello says so,
/// and the firmware resamples what it is sent.
public enum UplinkAudio {
    public static let sampleRates: Set<Int> = [8_000, 12_000, 16_000, 24_000, 48_000]
    public static let frameDurations: Set<Int> = [20, 40, 60, 80, 100, 120]

    /// Why these parameters cannot be taken, or nil when they can.
    public static func refusal(_ params: Xiaozhi.AudioParams) -> String? {
        guard params.format == "opus" else { return "uplink audio must be Opus, got \(params.format)" }
        guard params.channels == 1 else { return "uplink audio must be mono, got \(params.channels) channels" }
        guard sampleRates.contains(params.sampleRate) else {
            return "uplink sample_rate must be 8000, 12000, 16000, 24000 or 48000, got \(params.sampleRate)"
        }
        guard frameDurations.contains(params.frameDuration) else {
            return "uplink frame_duration must be 20, 40, 60, 80, 100 or 120 ms, got \(params.frameDuration)"
        }
        return nil
    }

    /// Packets per second a device with these frames sends (the reference device, 60 ms: ~17).
    public static func packetsPerSecond(frameDuration: Int) -> Double { 1000 / Double(max(frameDuration, 1)) }
}

/// Turns a device's decoded packets (any rate, any frame length) into the 16 kHz, 60 ms frames the
/// VAD and ASR take: resampled packet by packet, cut into frames of 960 samples, the remainder kept for
/// the next packet. A plain value; the session owns one.
public struct UplinkFramer: Sendable {
    public let sourceRate: Int
    public static let targetRate = 16_000
    public static let frameSamples = AudioFormat.uplink.samplesPerFrame
    private var pending: [Int16] = []

    public init(sourceRate: Int) {
        self.sourceRate = sourceRate
    }

    /// The whole frames these samples complete.
    public mutating func push(_ samples: [Int16]) -> [[Int16]] {
        pending += Resampler.resample(samples, from: sourceRate, to: Self.targetRate)
        var frames: [[Int16]] = []
        var start = 0
        while pending.count - start >= Self.frameSamples {
            frames.append(Array(pending[start..<start + Self.frameSamples]))
            start += Self.frameSamples
        }
        pending.removeFirst(start)
        return frames
    }

    /// Drops the partial frame (a new `listen start`).
    public mutating func reset() { pending.removeAll() }
}
