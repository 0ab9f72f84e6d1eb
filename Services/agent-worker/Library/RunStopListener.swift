import Foundation
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import Synchronization

/// Hears the orchestrator's stop messages and stops this process's tasks of that run.
final class RunStopListener: Service, Sendable {
    let subscriber: RedisSubscriber
    let stops: RunStops
    private let listening = Atomic<Bool>(false)

    init(subscriber: RedisSubscriber, stops: RunStops) {
        self.subscriber = subscriber
        self.stops = stops
    }

    var isListening: Bool { listening.load(ordering: .relaxed) }

    func run() async throws {
        await subscriber.holdSubscription(
            RunControl.stopChannel, subscribed: { self.listening.store(true, ordering: .relaxed) }
        ) {
            [stops] message in stops.stop(runID: String(decoding: message, as: UTF8.self))
        }
        listening.store(false, ordering: .relaxed)
    }
}
