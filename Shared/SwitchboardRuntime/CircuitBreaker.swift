/// Consecutive failures open the circuit for a while; then one trial call decides whether it closes.
/// Shared by agent-worker's model providers and voice-worker's speech engines.
public struct CircuitBreaker: Sendable, Hashable {
    public enum State: Sendable, Hashable {
        case closed(failures: Int)
        case open(until: ContinuousClock.Instant)
        case halfOpen(trialInFlight: Bool)
    }

    public var failureThreshold = 5
    public var openDuration: Duration = .seconds(30)
    public private(set) var state: State = .closed(failures: 0)

    public init(failureThreshold: Int = 5, openDuration: Duration = .seconds(30)) {
        self.failureThreshold = failureThreshold
        self.openDuration = openDuration
    }

    /// Whether a call may go out now.
    public mutating func allow(now: ContinuousClock.Instant) -> Bool {
        switch state {
        case .closed: return true
        case .open(let until):
            guard now >= until else { return false }
            state = .halfOpen(trialInFlight: true)
            return true
        case .halfOpen(let trialInFlight):
            if trialInFlight { return false }
            state = .halfOpen(trialInFlight: true)
            return true
        }
    }

    public mutating func recordSuccess() {
        state = .closed(failures: 0)
    }

    public mutating func recordFailure(now: ContinuousClock.Instant) {
        switch state {
        case .closed(let failures):
            state =
                failures + 1 >= failureThreshold ? .open(until: now + openDuration) : .closed(failures: failures + 1)
        case .halfOpen, .open:
            state = .open(until: now + openDuration)
        }
    }
}
