import Foundation
import SwitchboardContracts
import SwitchboardRuntime
import Synchronization

/// One breaker per provider endpoint, shared by every task of the worker.
public final class CircuitBreakers: Sendable {
    private let breakers = Mutex<[String: CircuitBreaker]>([:])
    private let template: CircuitBreaker

    public init(template: CircuitBreaker = CircuitBreaker()) {
        self.template = template
    }

    func allow(_ key: String) -> Bool {
        breakers.withLock { $0[key, default: template].allow(now: .now) }
    }

    func recordSuccess(_ key: String) {
        breakers.withLock { $0[key, default: template].recordSuccess() }
    }

    func recordFailure(_ key: String) {
        breakers.withLock { $0[key, default: template].recordFailure(now: .now) }
    }

    public func state(_ key: String) -> CircuitBreaker.State {
        breakers.withLock { $0[key, default: template].state }
    }
}
