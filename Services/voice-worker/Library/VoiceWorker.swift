import AsyncHTTPClient
import Foundation
import Logging
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
