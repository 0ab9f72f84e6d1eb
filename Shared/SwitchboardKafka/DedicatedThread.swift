import Foundation
import Synchronization

/// A thread of its own for librdkafka's blocking calls, so they never occupy the cooperative pool.
final class DedicatedThread: Sendable {
    private let finished = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    init(name: String, body: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            body()
            markFinished()
        }
        thread.name = name
        thread.start()
    }

    private func markFinished() {
        let waiters = finished.withLock { state in
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        waiters.forEach { $0.resume() }
    }

    /// Returns once the body has returned.
    func join() async {
        await withCheckedContinuation { continuation in
            let done = finished.withLock { state in
                if !state.done { state.waiters.append(continuation) }
                return state.done
            }
            if done { continuation.resume() }
        }
    }
}

/// Runs one blocking call on a fresh thread and awaits its result.
func runBlocking<T: Sendable>(name: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        _ = DedicatedThread(name: name) {
            continuation.resume(with: Result { try body() })
        }
    }
}
