import Foundation

/// Capped exponential backoff, the one every retry loop uses. `delay` has full jitter (AWS architecture
/// blog's "full jitter"): attempt n waits a random time in [0, min(cap, base × factorⁿ)], so retrying
/// clients spread out instead of stampeding. `ceiling` is the plain exponential, for a retry schedule a
/// protocol fixes (seed 001's `retry_delay * backoff_factor ** retry_count`).
public struct Backoff: Sendable, Hashable {
    public var initial: Duration
    public var maximum: Duration
    public var factor: Double

    public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5), factor: Double = 2) {
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
    }

    /// The upper bound of the wait before retry number `attempt` (0-based).
    public func ceiling(attempt: Int) -> Duration {
        let initialSeconds = Double(initial.components.seconds) + Double(initial.components.attoseconds) / 1e18
        let maximumSeconds = Double(maximum.components.seconds) + Double(maximum.components.attoseconds) / 1e18
        let exponent = min(Double(max(attempt, 0)), 62)
        let seconds = min(maximumSeconds, initialSeconds * Foundation.pow(factor, exponent))
        return .nanoseconds(Int64(seconds * 1e9))
    }

    public func delay(attempt: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        let ceilingNanoseconds = ceiling(attempt: attempt).nanosecondsValue
        guard ceilingNanoseconds > 0 else { return .zero }
        return .nanoseconds(Int64.random(in: 0...ceilingNanoseconds, using: &generator))
    }

    public func delay(attempt: Int) -> Duration {
        var generator = SystemRandomNumberGenerator()
        return delay(attempt: attempt, using: &generator)
    }
}

extension Duration {
    fileprivate var nanosecondsValue: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
