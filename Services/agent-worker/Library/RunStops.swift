import Foundation
import SwitchboardContracts
import SwitchboardRuntime
import Synchronization

/// The stop handlers of the tasks running in this process, by run.
final class RunStops: Sendable {
    private let handlers = Mutex<[String: [UUID: @Sendable () -> Void]]>([:])

    func register(runID: String, _ handler: @escaping @Sendable () -> Void) -> UUID {
        let id = UUID()
        handlers.withLock { $0[runID, default: [:]][id] = handler }
        return id
    }

    func unregister(runID: String, id: UUID) {
        handlers.withLock { handlers in
            handlers[runID]?.removeValue(forKey: id)
            if handlers[runID]?.isEmpty == true { handlers.removeValue(forKey: runID) }
        }
    }

    func stop(runID: String) {
        let stopping = handlers.withLock { $0[runID].map { Array($0.values) } ?? [] }
        for handler in stopping { handler() }
    }
}
