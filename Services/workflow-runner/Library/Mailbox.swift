import Synchronization

/// Values delivered by key to the task that waits for them, or kept until one does (a value may come
/// first: a takeover reads a run's partition again, its replies included, while the run resumes).
final class Mailbox<Value: Sendable>: Sendable {
    private enum Slot {
        case waiting(CheckedContinuation<Value, any Error>)
        case delivered(Value)
    }

    private let slots = Mutex<[String: Slot]>([:])

    /// Waits for the value of `key` (or takes the one that came first); throws when cancelled.
    func receive(_ key: String) async throws -> Value {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let ready = slots.withLock { slots -> Value? in
                    if case .delivered(let value)? = slots[key] {
                        slots[key] = nil
                        return value
                    }
                    slots[key] = .waiting(continuation)
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiting = slots.withLock { slots -> CheckedContinuation<Value, any Error>? in
                guard case .waiting(let continuation)? = slots[key] else { return nil }
                slots[key] = nil
                return continuation
            }
            waiting?.resume(throwing: CancellationError())
        }
    }

    /// The value of `key` if it came already.
    func take(_ key: String) -> Value? {
        slots.withLock { slots in
            guard case .delivered(let value)? = slots[key] else { return nil }
            slots[key] = nil
            return value
        }
    }

    func deliver(_ value: Value, to key: String) {
        let waiting = slots.withLock { slots -> CheckedContinuation<Value, any Error>? in
            if case .waiting(let continuation)? = slots[key] {
                slots[key] = nil
                return continuation
            }
            slots[key] = .delivered(value)
            return nil
        }
        waiting?.resume(returning: value)
    }
}
