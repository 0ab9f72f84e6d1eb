import SwitchboardContracts

/// Dispatches a consumer's messages by their envelope's type to typed handlers, so a service says
/// what it does with each event and nothing else:
///
///     var router = EventRouter(service: "orchestrator")
///     router.on(ChatMessageSubmitted.self) { try await runner.handle($0) }
///
/// A message of a type no handler takes is poison (`UnhandledEventError`): dead-lettered, never
/// silently committed, so a version that handles it can replay it.
public struct EventRouter: Sendable {
    typealias Route = @Sendable (KafkaConsumerMessage) async throws -> Handling

    private var routes: [String: Route] = [:]
    private let service: String

    public init(service: String) {
        self.service = service
    }

    /// Events of `type` go to `handler`; the message is handled when it returns.
    public mutating func on<P: EventPayload>(
        _ type: P.Type, _ handler: @escaping @Sendable (Envelope<P>) async throws -> Void
    ) {
        routes[P.eventType] = { message in
            try await handler(try EnvelopeCodec.decode(P.self, from: message.value))
            return .done
        }
    }

    /// Events of `type` go to `handler`, which may start work that outlives the call (a workflow run)
    /// and return it: the partition goes on with its next messages meanwhile, and the message's offset
    /// is stored only once that work finished, so the partition's next owner reads the message again
    /// if it did not. nil: nothing is left to do, the message is handled.
    public mutating func onCompletingLater<P: EventPayload>(
        _ type: P.Type, _ handler: @escaping @Sendable (Envelope<P>) async throws -> LaterCompletion?
    ) {
        routes[P.eventType] = { message in
            try await handler(try EnvelopeCodec.decode(P.self, from: message.value)).map(Handling.later) ?? .done
        }
    }

    func route(_ message: KafkaConsumerMessage) async throws -> Handling {
        let header = try EnvelopeCodec.header(from: message.value)
        guard let route = routes[header.type] else { throw UnhandledEventError(type: header.type, service: service) }
        return try await route(message)
    }
}

/// Work a handler started that finishes after it returned, on its message's behalf.
public struct LaterCompletion: Sendable {
    let work: @Sendable () async -> Bool
    let abandon: @Sendable () -> Void

    /// `work` returns true when it finished (the message is handled) and false when it gave up (its
    /// message is read again by whoever owns the partition next). `abandon` is called, while `work`
    /// runs, when this consumer loses the partition or stops: `work` should then return false soon.
    public init(abandon: @escaping @Sendable () -> Void, work: @escaping @Sendable () async -> Bool) {
        self.work = work
        self.abandon = abandon
    }
}

/// What became of a message its handler returned from.
enum Handling: Sendable {
    case done
    case later(LaterCompletion)
}
