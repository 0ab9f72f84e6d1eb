/// When each downlink frame may leave so the device's ~40-packet decode queue never overflows: a
/// burst of `burstFrames` at once, then one frame per frame duration, all on a monotonic clock. It
/// tracks when the device will have played everything sent, so `tts stop` waits for that and a stall
/// (synthesis slower than real time) starts a new burst.
public struct DownlinkPacer: Sendable {
    public var frameDuration: Duration
    public var burstFrames: Int
    /// When the device finishes playing what was sent; nil before the first frame.
    public private(set) var playbackEnd: ContinuousClock.Instant?

    public init(frameDuration: Duration = .milliseconds(60), burstFrames: Int = 5) {
        self.frameDuration = frameDuration
        self.burstFrames = burstFrames
    }

    /// The earliest moment the next frame may be sent.
    public func sendTime(now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        guard let playbackEnd, playbackEnd > now else { return now }
        let allowedAhead = frameDuration * (burstFrames - 1)
        let earliest = playbackEnd - allowedAhead
        return earliest > now ? earliest : now
    }

    /// Records a frame sent at `time`.
    public mutating func sent(at time: ContinuousClock.Instant) {
        let start = playbackEnd.map { $0 > time ? $0 : time } ?? time
        playbackEnd = start + frameDuration
    }

    /// When `tts stop` may be sent: once the last frame has had time to play.
    public func drainedTime(now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        guard let playbackEnd, playbackEnd > now else { return now }
        return playbackEnd
    }

    /// Forgets what was sent (barge-in: the device drops its queue on `tts stop`).
    public mutating func reset() { playbackEnd = nil }
}
