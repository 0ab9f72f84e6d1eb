/// Sample-rate conversion for speech (eSpeak's 22.05 kHz to Opus' 16 or 24 kHz): linear interpolation
/// after a short low-pass when downsampling. Good enough for speech recognition and playback of a
/// synthetic voice; not a studio resampler.
public enum Resampler {
    public static func resample(_ input: [Int16], from source: Int, to target: Int) -> [Int16] {
        guard source != target, !input.isEmpty else { return input }
        var samples = input.map(Double.init)
        if target < source {
            // A moving average as anti-alias filter, its width matched to the ratio.
            let width = max(1, Int((Double(source) / Double(target)).rounded()))
            if width > 1 {
                var filtered = [Double](repeating: 0, count: samples.count)
                var sum = 0.0
                for index in samples.indices {
                    sum += samples[index]
                    if index >= width { sum -= samples[index - width] }
                    filtered[index] = sum / Double(min(index + 1, width))
                }
                samples = filtered
            }
        }
        let step = Double(source) / Double(target)
        let count = Int(Double(samples.count) / step)
        var output = [Int16]()
        output.reserveCapacity(count)
        for index in 0..<count {
            let position = Double(index) * step
            let base = Int(position)
            let fraction = position - Double(base)
            let next = min(base + 1, samples.count - 1)
            let value = samples[base] * (1 - fraction) + samples[next] * fraction
            output.append(Int16(clamping: Int(value.rounded())))
        }
        return output
    }
}

/// Reads the 16-bit PCM mono WAV files eSpeak writes.
public enum WAV {
    public struct Audio: Sendable, Equatable {
        public var sampleRate: Int
        public var samples: [Int16]

        public init(sampleRate: Int, samples: [Int16]) {
            self.sampleRate = sampleRate
            self.samples = samples
        }
    }

    public struct FormatError: Error, CustomStringConvertible {
        public var description: String
    }

    public static func parse(_ bytes: [UInt8]) throws -> Audio {
        func u32(_ at: Int) -> Int {
            Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24
        }
        func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        guard bytes.count >= 12, bytes[0..<4].elementsEqual("RIFF".utf8), bytes[8..<12].elementsEqual("WAVE".utf8)
        else {
            throw FormatError(description: "not a RIFF/WAVE file")
        }
        var offset = 12
        var sampleRate = 0
        var bitsPerSample = 0
        var channels = 0
        while offset + 8 <= bytes.count {
            let id = String(decoding: bytes[offset..<offset + 4], as: UTF8.self)
            // eSpeak writing to a pipe leaves the sizes at 0x7FFFFFFF: clamp to what is there.
            let size = min(u32(offset + 4), bytes.count - offset - 8)
            let body = offset + 8
            if id == "fmt " {
                guard size >= 16 else { throw FormatError(description: "short fmt chunk") }
                channels = u16(body + 2)
                sampleRate = u32(body + 4)
                bitsPerSample = u16(body + 14)
            } else if id == "data" {
                guard bitsPerSample == 16, channels == 1, sampleRate > 0 else {
                    throw FormatError(
                        description: "expected 16-bit mono PCM, got \(bitsPerSample)-bit \(channels) channels")
                }
                let count = size / 2
                var samples = [Int16](repeating: 0, count: count)
                for index in 0..<count {
                    samples[index] = Int16(
                        bitPattern: UInt16(bytes[body + 2 * index]) | UInt16(bytes[body + 2 * index + 1]) << 8)
                }
                return Audio(sampleRate: sampleRate, samples: samples)
            }
            offset = body + size + (size & 1)
        }
        throw FormatError(description: "no data chunk")
    }
}

extension WAV {
    /// A 16-bit mono PCM WAV file (what speech-to-text services take).
    public static func encode(_ samples: [Int16], sampleRate: Int) -> [UInt8] {
        func le32(_ value: Int) -> [UInt8] { (0..<4).map { UInt8((value >> (8 * $0)) & 0xFF) } }
        func le16(_ value: Int) -> [UInt8] { (0..<2).map { UInt8((value >> (8 * $0)) & 0xFF) } }
        let dataBytes = samples.count * 2
        var bytes = Array("RIFF".utf8) + le32(36 + dataBytes) + Array("WAVE".utf8)
        bytes +=
            Array("fmt ".utf8) + le32(16) + le16(1) + le16(1) + le32(sampleRate) + le32(sampleRate * 2) + le16(2)
            + le16(16)
        bytes += Array("data".utf8) + le32(dataBytes)
        bytes.reserveCapacity(bytes.count + dataBytes)
        for sample in samples {
            let value = UInt16(bitPattern: sample)
            bytes.append(UInt8(value & 0xFF))
            bytes.append(UInt8(value >> 8))
        }
        return bytes
    }
}
