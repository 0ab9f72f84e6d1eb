import ArgumentParser
import Foundation
import SwitchboardRuntime
import SwitchboardVoice

/// The speech recogniser: `pocketsphinx` (offline, English), `openai` (an OpenAI-compatible
/// /audio/transcriptions) or `instant` (benchmarks only).
public enum ASREngine: String, Sendable, CaseIterable {
    case pocketsphinx, openai, instant
}

/// The speech synthesiser: `espeak` (offline), `openai` (an OpenAI-compatible /audio/speech) or `instant`
/// (benchmarks only).
public enum TTSEngine: String, Sendable, CaseIterable {
    case espeak, openai, instant
}

/// voice-worker's own settings: flag, else `SWITCHBOARD_VOICE_*`, else the default here (docs/voice.md).
public struct VoiceSettings: Sendable {
    public var vad = VoiceActivityDetector.Configuration()
    /// Opus packets queued per session before the oldest are dropped (50 × 60 ms = 3 s).
    public var queueFrames = 50
    /// A farewell, then the session is closed, after this long without voice; hard close after `hardClose`.
    public var idleFarewell: Duration = .seconds(120)
    public var hardClose: Duration = .seconds(180)
    public var farewellText = "Goodbye, talk to you later."
    /// Collaboration pattern of the chat requests a device's speech becomes ("direct": one role answers).
    public var pattern = "direct"
    /// How long a turn waits for the conversation's answer to progress before giving up.
    public var answerTimeout: Duration = .seconds(60)
    public var asr = PocketSphinxRecognizer.Configuration()
    public var ttsVoice = "en-us"
    public var ttsWordsPerMinute = 160
    public var asrEngine = ASREngine.pocketsphinx
    public var ttsEngine = TTSEngine.espeak
    public var openAI = OpenAISpeechConfiguration()
    /// A folder where each turn's audio, as the voice-worker decoded it (16 kHz WAV), is written as
    /// `<session>-<turn>.wav`: for checking the pipeline or the ASR on real devices. Off (nil) by default.
    public var recordDirectory: String?
    /// The engine that answers when the ASR (TTS) engine fails after its retries or its circuit is
    /// open: `auto` (the offline engine behind an OpenAI-compatible one, none behind the offline one),
    /// `none`, or an engine name.
    public var asrFallback = "auto"
    public var ttsFallback = "auto"
    public var failover = SpeechFailoverPolicy()

    public init() {}

    /// The fallback recogniser's engine, or nil.
    public var asrFallbackEngine: ASREngine? {
        switch asrFallback {
        case "auto": asrEngine == .openai ? .pocketsphinx : nil
        case "none": nil
        case let name: ASREngine(rawValue: name).flatMap { $0 == asrEngine ? nil : $0 }
        }
    }

    public var ttsFallbackEngine: TTSEngine? {
        switch ttsFallback {
        case "auto": ttsEngine == .openai ? .espeak : nil
        case "none": nil
        case let name: TTSEngine(rawValue: name).flatMap { $0 == ttsEngine ? nil : $0 }
        }
    }

    public struct Options: ParsableArguments {
        @Option(help: "VAD: voiced when RMS ≥ this × noise floor (env SWITCHBOARD_VOICE_VAD_RATIO; default 3.0).")
        public var vadRatio: Double?
        @Option(help: "VAD: minimum RMS of speech, of 32768 (env SWITCHBOARD_VOICE_VAD_MIN_RMS; default 200).")
        public var vadMinRms: Double?
        @Option(help: "VAD: silence ending an utterance, ms (env SWITCHBOARD_VOICE_MIN_SILENCE_MS; default 600).")
        public var minSilenceMs: Int?
        @Option(help: "VAD: audio kept before speech, ms (env SWITCHBOARD_VOICE_PRE_ROLL_MS; default 600).")
        public var preRollMs: Int?
        @Option(help: "Opus packets queued per session (env SWITCHBOARD_VOICE_QUEUE_FRAMES; default 50).")
        public var queueFrames: Int?
        @Option(help: "Seconds without voice before the farewell (env SWITCHBOARD_VOICE_IDLE_SECONDS; default 120).")
        public var idleSeconds: Int?
        @Option(
            help: "Seconds without voice before a hard close (env SWITCHBOARD_VOICE_HARD_CLOSE_SECONDS; default 180).")
        public var hardCloseSeconds: Int?
        @Option(help: "Collaboration pattern of voice turns (env SWITCHBOARD_VOICE_PATTERN; default direct).")
        public var pattern: String?
        @Option(help: "PocketSphinx model folder (env SWITCHBOARD_VOICE_ASR_MODEL_DIR; default Debian's en-us).")
        public var asrModelDir: String?
        @Option(help: "PocketSphinx decoders loaded (env SWITCHBOARD_VOICE_ASR_DECODERS; default 1).")
        public var asrDecoders: Int?
        @Option(help: "eSpeak NG voice (env SWITCHBOARD_VOICE_TTS_VOICE; default en-us).")
        public var ttsVoice: String?
        @Option(help: "eSpeak NG words per minute (env SWITCHBOARD_VOICE_TTS_RATE; default 160).")
        public var ttsRate: Int?
        @Option(
            help: "Speech recognition: pocketsphinx or openai (env SWITCHBOARD_VOICE_ASR_ENGINE; default pocketsphinx)."
        )
        public var asrEngine: String?
        @Option(help: "Speech synthesis: espeak or openai (env SWITCHBOARD_VOICE_TTS_ENGINE; default espeak).")
        public var ttsEngine: String?
        @Option(
            help:
                "OpenAI-compatible speech API base, up to /v1 (env SWITCHBOARD_VOICE_OPENAI_BASE_URL; default https://api.openai.com/v1)."
        )
        public var openaiBaseUrl: String?
        @Option(help: "Transcription model (env SWITCHBOARD_VOICE_OPENAI_ASR_MODEL; default whisper-1).")
        public var openaiAsrModel: String?
        @Option(help: "Speech model (env SWITCHBOARD_VOICE_OPENAI_TTS_MODEL; default tts-1).")
        public var openaiTtsModel: String?
        @Option(help: "Speech voice (env SWITCHBOARD_VOICE_OPENAI_TTS_VOICE; default alloy).")
        public var openaiTtsVoice: String?
        @Option(help: "Folder for each turn's decoded audio as WAV (env SWITCHBOARD_VOICE_RECORD_DIR; default off).")
        public var recordDir: String?
        @Option(
            help: "ASR fallback: auto, none, pocketsphinx or openai (env SWITCHBOARD_VOICE_ASR_FALLBACK; default auto)."
        )
        public var asrFallback: String?
        @Option(help: "TTS fallback: auto, none, espeak or openai (env SWITCHBOARD_VOICE_TTS_FALLBACK; default auto).")
        public var ttsFallback: String?
        @Option(help: "Retries of a failing speech engine per call (env SWITCHBOARD_VOICE_ENGINE_RETRIES; default 1).")
        public var engineRetries: Int?
        @Option(
            help:
                "Failed calls in a row that open an engine's circuit (env SWITCHBOARD_VOICE_ENGINE_FAILURES; default 3)."
        )
        public var engineFailures: Int?
        @Option(
            help: "Seconds an open circuit skips its engine (env SWITCHBOARD_VOICE_ENGINE_OPEN_SECONDS; default 30).")
        public var engineOpenSeconds: Int?

        public init() {}

        public func settings(environment: [String: String] = ProcessInfo.processInfo.environment) throws
            -> VoiceSettings
        {
            var settings = VoiceSettings()
            settings.vad.speechToNoiseRatio = try setting(
                vadRatio, environment: "VOICE_VAD_RATIO", default: settings.vad.speechToNoiseRatio,
                environment: environment)
            settings.vad.minimumSpeechRMS = try setting(
                vadMinRms, environment: "VOICE_VAD_MIN_RMS", default: settings.vad.minimumSpeechRMS,
                environment: environment)
            settings.vad.minSilenceMilliseconds = try setting(
                minSilenceMs, environment: "VOICE_MIN_SILENCE_MS", default: settings.vad.minSilenceMilliseconds,
                environment: environment)
            settings.vad.preRollMilliseconds = try setting(
                preRollMs, environment: "VOICE_PRE_ROLL_MS", default: settings.vad.preRollMilliseconds,
                environment: environment)
            settings.queueFrames = try setting(
                queueFrames, environment: "VOICE_QUEUE_FRAMES", default: settings.queueFrames, environment: environment)
            let idle = try setting(
                idleSeconds, environment: "VOICE_IDLE_SECONDS", default: 120, environment: environment)
            let hard = try setting(
                hardCloseSeconds, environment: "VOICE_HARD_CLOSE_SECONDS", default: 180, environment: environment)
            settings.idleFarewell = .seconds(idle)
            settings.hardClose = .seconds(hard)
            settings.pattern = try setting(
                pattern, environment: "VOICE_PATTERN", default: settings.pattern, environment: environment)
            settings.asr.modelDirectory = try setting(
                asrModelDir, environment: "VOICE_ASR_MODEL_DIR", default: settings.asr.modelDirectory,
                environment: environment)
            settings.asr.decoders = try setting(
                asrDecoders, environment: "VOICE_ASR_DECODERS", default: settings.asr.decoders, environment: environment
            )
            settings.ttsVoice = try setting(
                ttsVoice, environment: "VOICE_TTS_VOICE", default: settings.ttsVoice, environment: environment)
            settings.ttsWordsPerMinute = try setting(
                ttsRate, environment: "VOICE_TTS_RATE", default: settings.ttsWordsPerMinute, environment: environment)
            let asrName = try setting(
                asrEngine, environment: "VOICE_ASR_ENGINE", default: settings.asrEngine.rawValue,
                environment: environment)
            let ttsName = try setting(
                ttsEngine, environment: "VOICE_TTS_ENGINE", default: settings.ttsEngine.rawValue,
                environment: environment)
            settings.openAI.baseURL = try setting(
                openaiBaseUrl, environment: "VOICE_OPENAI_BASE_URL", default: settings.openAI.baseURL,
                environment: environment)
            settings.openAI.transcriptionModel = try setting(
                openaiAsrModel, environment: "VOICE_OPENAI_ASR_MODEL", default: settings.openAI.transcriptionModel,
                environment: environment)
            settings.openAI.speechModel = try setting(
                openaiTtsModel, environment: "VOICE_OPENAI_TTS_MODEL", default: settings.openAI.speechModel,
                environment: environment)
            settings.openAI.speechVoice = try setting(
                openaiTtsVoice, environment: "VOICE_OPENAI_TTS_VOICE", default: settings.openAI.speechVoice,
                environment: environment)
            let record = try setting(recordDir, environment: "VOICE_RECORD_DIR", default: "", environment: environment)
            settings.recordDirectory = record.isEmpty ? nil : record
            settings.asrFallback = try setting(
                asrFallback, environment: "VOICE_ASR_FALLBACK", default: settings.asrFallback, environment: environment)
            settings.ttsFallback = try setting(
                ttsFallback, environment: "VOICE_TTS_FALLBACK", default: settings.ttsFallback, environment: environment)
            settings.failover.retries = try setting(
                engineRetries, environment: "VOICE_ENGINE_RETRIES", default: settings.failover.retries,
                environment: environment)
            settings.failover.failureThreshold = try setting(
                engineFailures, environment: "VOICE_ENGINE_FAILURES", default: settings.failover.failureThreshold,
                environment: environment)
            let openSeconds = try setting(
                engineOpenSeconds, environment: "VOICE_ENGINE_OPEN_SECONDS", default: 30, environment: environment)
            settings.failover.openDuration = .seconds(openSeconds)
            guard (["auto", "none"] + ASREngine.allCases.map(\.rawValue)).contains(settings.asrFallback),
                (["auto", "none"] + TTSEngine.allCases.map(\.rawValue)).contains(settings.ttsFallback),
                (0...5).contains(settings.failover.retries), settings.failover.failureThreshold > 0, openSeconds > 0
            else {
                throw ConfigurationError(
                    "the ASR fallback is auto, none, pocketsphinx, openai or instant, the TTS fallback auto, none, espeak, openai or instant; engine retries 0-5, failures and open seconds > 0"
                )
            }
            // The key only from the environment: a flag would show it in the process list.
            settings.openAI.apiKey = environment["SWITCHBOARD_VOICE_OPENAI_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
            guard let asr = ASREngine(rawValue: asrName), let tts = TTSEngine(rawValue: ttsName) else {
                throw ConfigurationError(
                    "the ASR engine is pocketsphinx, openai or instant (benchmarks), the TTS engine espeak, openai or instant"
                )
            }
            settings.asrEngine = asr
            settings.ttsEngine = tts
            guard settings.vad.speechToNoiseRatio > 1, settings.vad.minimumSpeechRMS >= 0,
                settings.vad.minSilenceMilliseconds > 0,
                settings.vad.preRollMilliseconds >= 0, settings.queueFrames > 0, idle > 0, hard >= idle,
                settings.asr.decoders > 0, (80...450).contains(settings.ttsWordsPerMinute)
            else {
                throw ConfigurationError(
                    "voice settings out of range (ratio > 1, silence > 0, queue > 0, 0 < idle ≤ hard close, decoders > 0, rate 80-450)"
                )
            }
            return settings
        }
    }
}
