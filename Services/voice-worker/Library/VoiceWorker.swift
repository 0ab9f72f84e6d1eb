import AsyncHTTPClient
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardVoice

/// Joins the voice-worker consumer group on `Topics.voiceUplink` (keyed by device session, so one
/// instance sees a session's audio in order) and runs one `VoiceSession` per device session.
public enum VoiceWorker {
    public static func run(configuration: SwitchboardConfiguration, settings: VoiceSettings = VoiceSettings())
        async throws
    {
        let context = try await ServiceRunner.makeContext(configuration: configuration)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            try await run(context: context, settings: settings, http: http)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    static func run(context: ServiceContext, settings: VoiceSettings, http: HTTPClient) async throws {
        let configuration = context.configuration
        func makeRecognizer(_ engine: ASREngine) async throws -> any SpeechRecognizer {
            switch engine {
            case .openai: return OpenAITranscriber(configuration: settings.openAI, client: http)
            case .instant: return InstantRecognizer()
            case .pocketsphinx:
                let pocketSphinx = try PocketSphinxRecognizer(configuration: settings.asr)
                // Loaded before the consumer joins: the first utterance must not wait for the model.
                try await pocketSphinx.load()
                return pocketSphinx
            }
        }
        func makeSynthesizer(_ engine: TTSEngine) throws -> any SpeechSynthesizer {
            switch engine {
            case .openai: OpenAISynthesizer(configuration: settings.openAI, client: http)
            case .instant: InstantSynthesizer()
            case .espeak: try EspeakSynthesizer(voice: settings.ttsVoice, wordsPerMinute: settings.ttsWordsPerMinute)
            }
        }
        // Each stage: its engine retried behind a circuit breaker, then its fallback (SpeechFailover.swift).
        let recognizer = FailoverRecognizer(
            primary: try await makeRecognizer(settings.asrEngine),
            fallback: try await settings.asrFallbackEngine.asyncMap(makeRecognizer),
            policy: settings.failover)
        let synthesizer = FailoverSynthesizer(
            primary: try makeSynthesizer(settings.ttsEngine),
            fallback: try settings.ttsFallbackEngine.map(makeSynthesizer), policy: settings.failover)
        let subscriber = RedisSubscriber(endpoint: try configuration.redisEndpoint, logger: context.logger)
        let sessions = VoiceSessions(
            context: context, subscriber: subscriber,
            engines: VoiceEngines(recognizer: recognizer, synthesizer: synthesizer), settings: settings)
        let consumer = try context.makeConsumer(group: ConsumerGroups.voiceWorker)
        var router = EventRouter(service: configuration.service.rawValue)
        router.on(VoiceUplinkEvent.self) { try await sessions.route($0.payload) }
        let processor = KafkaEventProcessor(
            consumer: consumer, deadLetterProducer: context.producer, logger: context.logger, router: router)
        // Stopped in reverse: the consumer first, then the sessions, then the Redis subscription.
        try await ServiceRunner.run(context: context, services: [subscriber, sessions, processor])
    }
}

public struct VoiceEngines: Sendable {
    public var recognizer: any SpeechRecognizer
    public var synthesizer: any SpeechSynthesizer

    public init(recognizer: any SpeechRecognizer, synthesizer: any SpeechSynthesizer) {
        self.recognizer = recognizer
        self.synthesizer = synthesizer
    }
}

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
    static let overflow = Counter(label: "sb_voice_frames_dropped_total", dimensions: [("reason", "queue_full")])
    static let orphans = Counter(label: "sb_voice_orphan_events_total")
    static let active = Gauge(label: "sb_voice_sessions")

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
        Self.active.record(count)
    }

    /// Hands an uplink event to its session, creating the session from the routing table when this
    /// instance has not seen it open (a rebalance moved the partition here).
    func route(_ event: VoiceUplinkEvent) async throws {
        if let session = sessions.withLock({ $0[event.sessionId] }) {
            if session.offer(event) == false { Self.overflow.increment() }
            return
        }
        if event.kind == .close { return }
        guard let route = try await VoiceRouteStore(redis: context.redis).route(session: event.sessionId) else {
            // The device is gone (its route expired): nothing to answer.
            Self.orphans.increment()
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
        Self.active.record(sessions.withLock { $0.count })
        try await session.prepare()
        _ = session.offer(event)
        startContinuation.yield(session)
    }
}

extension Optional {
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async throws -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
