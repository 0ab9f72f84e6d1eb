import Metrics

extension Metrics.Timer {
    /// Records the time since `start` and returns it.
    @discardableResult
    func recordInterval(since start: ContinuousClock.Instant, clock: ContinuousClock) -> Duration {
        let elapsed = clock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        return elapsed
    }
}
