/// What a device says in manual mode (between `listen start` and `listen stop`), bounded: a device that
/// never says stop cannot grow a session's memory without end.
struct ManualRecording: Sendable {
    /// 30 s of 16 kHz mono (≈ 940 KiB of samples).
    static let maxSamples = 30 * 16_000
    static let fullMessage = "manual listening is limited to 30 s; what was heard so far is answered"

    private(set) var samples: [Int16] = []

    /// False (and nothing added) once `pcm` would pass the bound.
    mutating func append(_ pcm: [Int16]) -> Bool {
        guard samples.count + pcm.count <= Self.maxSamples else { return false }
        samples += pcm
        return true
    }

    mutating func removeAll() { samples.removeAll() }
}
