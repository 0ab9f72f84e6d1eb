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

/// Where librdkafka's blocking admin, metadata and flush calls run, one after the other: a serial
/// dispatch queue, never the cooperative pool (swift-kafka-client's `DispatchQueueTaskExecutor` does
/// the same), instead of a new thread per call.
final class BlockingExecutor: Sendable {
    static let shared = BlockingExecutor(label: "switchboard.kafka-blocking")

    private let queue: DispatchQueue

    init(label: String) {
        queue = DispatchQueue(label: label)
    }

    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }
}
