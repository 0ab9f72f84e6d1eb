import Foundation
import Logging
import Synchronization
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime
import SwitchboardTracing

/// Publishes a run's client events on its channel, with ids derived from what they say.
///
/// An event is handed to the producer and the run goes on: the events of one step share the
/// producer's batches instead of each waiting for the broker's acknowledgement (the idempotent
/// producer keeps their order on the run's partition). `settle()` waits for what is outstanding;
/// a run settles before its outcome counts, and an event whose delivery failed is sent again then.
final class Emitter: Sendable {
    let context: ServiceContext
    let runID: String
    private let outstanding = Mutex<[(message: KafkaOutgoingMessage, delivery: DeliveryFuture)]>([])
    /// A run that emits faster than the broker acknowledges waits once this many are outstanding.
    private static let outstandingLimit = 256

    init(context: ServiceContext, runID: String) {
        self.context = context
        self.runID = runID
    }

    func emit(_ payload: some FramePayload, id: UUID) async throws {
        let event = try ClientEvent(channel: .workflow(runID), payload: payload)
        let envelope = Envelope(
            id: id, routingKey: runID, traceparent: Tracing.causeTraceparent(orphan: "emit workflow event"),
            source: context.source, payload: event)
        let message = try EventBus.message(envelope, topic: Topics.clientEvents)
        let delivery = try await context.producer.enqueue(message)
        let count = outstanding.withLock {
            $0.append((message, delivery))
            return $0.count
        }
        if count > Self.outstandingLimit { try await settle() }
    }

    /// Returns once every event emitted so far is with the broker; a failed one is sent again
    /// (awaited, with retries), so nothing emitted is lost, at the price of its order.
    func settle() async throws {
        let waiting = outstanding.withLock { pending in
            defer { pending = [] }
            return pending
        }
        for (message, delivery) in waiting {
            do {
                _ = try await delivery.report()
            } catch {
                context.logger.warning(
                    "a workflow event's delivery failed; sending it again", metadata: ["error": "\(error)"])
                _ = try await retrying(context.logger) { [context] in try await context.producer.send(message) }
            }
        }
    }
}
