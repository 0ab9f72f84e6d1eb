import Foundation

/// How close audio that went through the pipeline is to what the device recorded.
public enum AudioQuality {
    /// The signal-to-noise ratio of `decoded` against `reference`, in dB, at the best alignment within
    /// `maxLag` samples (Opus' decoder lags its encoder by its lookahead; a resampler shifts a little).
    public static func snr(reference: [Int16], decoded: [Int16], maxLag: Int = 400) -> (db: Double, lag: Int) {
        var best = (db: -Double.infinity, lag: 0)
        for lag in 0...maxLag {
            let count = min(reference.count, decoded.count - lag)
            guard count > 0 else { break }
            var signal = 0.0
            var noise = 0.0
            for index in 0..<count {
                let expected = Double(reference[index])
                let error = Double(decoded[index + lag]) - expected
                signal += expected * expected
                noise += error * error
            }
            let db = 10 * log10(signal / max(noise, 1))
            if db > best.db { best = (db, lag) }
        }
        return best
    }
}
