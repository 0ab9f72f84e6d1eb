import Foundation
import Metrics
import Synchronization
import SwitchboardContracts
import SwitchboardRuntime

/// How a speech engine is retried and when its fallback takes over (docs/voice.md#engines).
public struct SpeechFailoverPolicy: Sendable, Equatable {
    /// Retries of the primary engine within one call, waiting `retryDelay` · 2ⁿ before retry n+1.
    public var retries = 1
    public var retryDelay: Duration = .milliseconds(250)
    /// Failed calls (after their retries) in a row that open the primary's circuit, and for how long:
    /// while it is open the fallback answers at once, then one trial call decides.
    public var failureThreshold = 3
    public var openDuration: Duration = .seconds(30)

    public init(
        retries: Int = 1, retryDelay: Duration = .milliseconds(250), failureThreshold: Int = 3,
        openDuration: Duration = .seconds(30)
    ) {
        self.retries = retries
        self.retryDelay = retryDelay
        self.failureThreshold = failureThreshold
        self.openDuration = openDuration
    }
}

public struct SpeechEngineUnavailable: Error, CustomStringConvertible {
    public var description: String
}

/// One stage's engines (ASR or TTS): the primary, retried, behind its circuit breaker, then the
/// fallback. Shared by every session of the worker, so one engine's outage is learned once.
final class SpeechFailover: Sendable {
    let stage: String
    let policy: SpeechFailoverPolicy
    let hasFallback: Bool
    private let breaker: Mutex<CircuitBreaker>
    private let calls: (ok: Counter, failed: Counter, fallbackOK: Counter, fallbackFailed: Counter)
    private let fallbacks: Counter
    private let circuitOpen: Gauge

    init(stage: String, policy: SpeechFailoverPolicy, hasFallback: Bool) {
        self.stage = stage
        self.policy = policy
        self.hasFallback = hasFallback
        breaker = Mutex(CircuitBreaker(failureThreshold: policy.failureThreshold, openDuration: policy.openDuration))
        func counter(_ engine: String, _ outcome: String) -> Counter {
            VoiceWorkerMetrics.engineCalls(stage: stage, engine: engine, outcome: outcome)
        }
        calls = (
            counter("primary", "ok"), counter("primary", "error"), counter("fallback", "ok"),
            counter("fallback", "error")
        )
        fallbacks = VoiceWorkerMetrics.engineFallbacks(stage: stage)
        circuitOpen = VoiceWorkerMetrics.engineCircuitOpen(stage: stage)
    }

    var state: CircuitBreaker.State { breaker.withLock { $0.state } }

    func run<T: Sendable>(
        primary: () async throws -> T, fallback: (() async throws -> T)?, now: () -> ContinuousClock.Instant = { .now }
    ) async throws -> T {
        var lastError: (any Error)?
        if breaker.withLock({ $0.allow(now: now()) }) {
            for attempt in 0...policy.retries {
                if attempt > 0 {
                    try await Task.sleep(
                        for: Backoff(initial: policy.retryDelay, maximum: .seconds(60)).ceiling(attempt: attempt - 1))
                }
                do {
                    let result = try await primary()
                    calls.ok.increment()
                    breaker.withLock { $0.recordSuccess() }
                    circuitOpen.record(0)
                    return result
                } catch is CancellationError {
                    throw CancellationError()
                } catch {
                    calls.failed.increment()
                    lastError = error
                }
            }
            let opened = breaker.withLock { breaker -> Bool in
                breaker.recordFailure(now: now())
                if case .open = breaker.state { return true }
                return false
            }
            if opened { circuitOpen.record(1) }
        }
        guard let fallback, hasFallback else {
            throw lastError
                ?? SpeechEngineUnavailable(
                    description: "the \(stage) engine failed repeatedly and has no fallback; try again later")
        }
        fallbacks.increment()
        do {
            let result = try await fallback()
            calls.fallbackOK.increment()
            return result
        } catch {
            calls.fallbackFailed.increment()
            throw error
        }
    }
}

/// A recogniser with retries, a circuit breaker and a fallback recogniser.
struct FailoverRecognizer: SpeechRecognizer {
    let primary: any SpeechRecognizer
    let fallback: (any SpeechRecognizer)?
    let failover: SpeechFailover

    init(primary: any SpeechRecognizer, fallback: (any SpeechRecognizer)?, policy: SpeechFailoverPolicy) {
        self.primary = primary
        self.fallback = fallback
        failover = SpeechFailover(stage: "asr", policy: policy, hasFallback: fallback != nil)
    }

    func transcribe(_ samples: [Int16], sampleRate: Int) async throws -> String {
        try await failover.run(
            primary: { try await primary.transcribe(samples, sampleRate: sampleRate) },
            fallback: fallback.map { engine in { try await engine.transcribe(samples, sampleRate: sampleRate) } })
    }
}

/// A synthesiser with retries, a circuit breaker and a fallback synthesiser.
struct FailoverSynthesizer: SpeechSynthesizer {
    let primary: any SpeechSynthesizer
    let fallback: (any SpeechSynthesizer)?
    let failover: SpeechFailover

    init(primary: any SpeechSynthesizer, fallback: (any SpeechSynthesizer)?, policy: SpeechFailoverPolicy) {
        self.primary = primary
        self.fallback = fallback
        failover = SpeechFailover(stage: "tts", policy: policy, hasFallback: fallback != nil)
    }

    func synthesize(_ text: String, sampleRate: Int) async throws -> [Int16] {
        try await failover.run(
            primary: { try await primary.synthesize(text, sampleRate: sampleRate) },
            fallback: fallback.map { engine in { try await engine.synthesize(text, sampleRate: sampleRate) } })
    }
}
