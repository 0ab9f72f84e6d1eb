import Metrics
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardVoice
import Synchronization

/// The device sessions of this instance. Each runs in the service's task group; a session's inputs
/// go through a bounded queue that drops the oldest packet when the session falls behind.
final class VoiceSessions: Service, Sendable {
    let context: ServiceContext
    let subscriber: RedisSubscriber
    let engines: VoiceEngines
    let settings: VoiceSettings
    private let sessions = Mutex<[String: VoiceSession]>([:])
    private let starts: AsyncStream<VoiceSession>
    private let startContinuation: AsyncStream<VoiceSession>.Continuation

    init(context: ServiceContext, subscriber: RedisSubscriber, engines: VoiceEngines, settings: VoiceSettings) {
        self.context = context
        self.subscriber = subscriber
        self.engines = engines
        self.settings = settings
        (starts, startContinuation) = AsyncStream.makeStream()
    }

    func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for await session in starts {
                    group.addTask {
                        await session.run()
                        self.remove(session)
                    }
                }
            }
        } onGracefulShutdown: {
            self.startContinuation.finish()
            for session in self.sessions.withLock({ Array($0.values) }) { session.shutDown() }
        }
    }

    private func remove(_ session: VoiceSession) {
        let count = sessions.withLock { sessions in
            if sessions[session.id] === session { sessions[session.id] = nil }
            return sessions.count
        }
        VoiceWorkerMetrics.sessions.record(count)
    }

    /// Hands an uplink event to its session, creating the session from the routing table when this
    /// instance has not seen it open (a rebalance moved the partition here).
    func route(_ event: VoiceUplinkEvent) async throws {
        if let session = sessions.withLock({ $0[event.sessionId] }) {
            if session.offer(event) == false { VoiceWorkerMetrics.framesDropped.increment() }
            return
        }
        if event.kind == .close { return }
        guard let route = try await VoiceRouteStore(redis: context.redis).route(session: event.sessionId) else {
            // The device is gone (its route expired): nothing to answer.
            VoiceWorkerMetrics.orphanEvents.increment()
            return
        }
        let session = VoiceSession(id: event.sessionId, route: route, owner: self)
        let existing: VoiceSession? = sessions.withLock { sessions in
            if let existing = sessions[event.sessionId] { return existing }
            sessions[event.sessionId] = session
            return nil
        }
        if let existing {
            _ = existing.offer(event)
            return
        }
        VoiceWorkerMetrics.sessions.record(sessions.withLock { $0.count })
        try await session.prepare()
        _ = session.offer(event)
        startContinuation.yield(session)
    }
}
