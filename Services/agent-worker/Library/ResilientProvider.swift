import Foundation
import SwitchboardContracts
import SwitchboardRuntime

/// Retries a call that failed before any text arrived, behind the provider's circuit breaker, as seed
/// 001's StreamErrorHandler does: at most 3 retries, retry n waiting 1 s · 2ⁿ (2, 4, 8 s). Once text
/// has gone to the client a retry would repeat it, so a failure after that is final.
public struct ResilientProvider: ChatProvider {
    public struct Policy: Sendable, Hashable {
        public var maxRetries = 3
        public var retryDelay: Duration = .seconds(1)
        public var backoffFactor = 2.0

        public init(maxRetries: Int = 3, retryDelay: Duration = .seconds(1), backoffFactor: Double = 2) {
            self.maxRetries = maxRetries
            self.retryDelay = retryDelay
            self.backoffFactor = backoffFactor
        }

        /// The wait before retry `retry` (1 = the first): the seed's `retry_delay * backoff_factor ** retry_count`,
        /// its count raised before the wait is computed.
        public func delay(beforeRetry retry: Int) -> Duration {
            Backoff(initial: retryDelay, maximum: .seconds(3600), factor: backoffFactor).ceiling(attempt: retry)
        }
    }

    public let base: any ChatProvider
    public let breakerKey: String
    public let breakers: CircuitBreakers
    public let policy: Policy

    public init(base: any ChatProvider, breakerKey: String, breakers: CircuitBreakers, policy: Policy = Policy()) {
        self.base = base
        self.breakerKey = breakerKey
        self.breakers = breakers
        self.policy = policy
    }

    public var kind: ProviderKind { base.kind }

    @discardableResult
    public func stream(_ request: ProviderRequest, onDelta: (String) async throws -> Void) async throws -> [ToolCall] {
        var retries = 0
        while true {
            guard breakers.allow(breakerKey) else {
                var error = ProviderError(
                    .circuitOpen, "\(base.kind) provider failed repeatedly; not calling it for a while")
                error.retries = retries
                throw error
            }
            var delivered = false
            do {
                let calls = try await base.stream(request) { delta in
                    delivered = true
                    try await onDelta(delta)
                }
                breakers.recordSuccess(breakerKey)
                return calls
            } catch var error as ProviderError {
                breakers.recordFailure(breakerKey)
                guard error.isRetryable, !delivered, retries < policy.maxRetries else {
                    error.retries = retries
                    throw error
                }
                retries += 1
                try await Task.sleep(for: policy.delay(beforeRetry: retries))
            }
        }
    }
}
