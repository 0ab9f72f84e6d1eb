import Metrics

/// The voice-worker's metric handles, each label written once (docs/voice.md, "Metrics", lists them). The
/// gateway's side of the devices (`sb_voice_downlink_*`, `sb_voice_devices`) is in the gateway.
enum VoiceWorkerMetrics {
    // MARK: Sessions and uplink

    static let sessions = Gauge(label: "sb_voice_sessions")
    /// A session's input queue was full: its oldest event was dropped.
    static let framesDropped = Counter(label: "sb_voice_frames_dropped_total", dimensions: [("reason", "queue_full")])
    /// Events of a session whose route has expired (the device is gone).
    static let orphanEvents = Counter(label: "sb_voice_orphan_events_total")
    /// Uplink events waiting in every session's input queue of this worker (`VoiceSession.queued`).
    static let inputQueueDepth = Gauge(label: "sb_voice_input_queue_depth")
    static let decodeErrors = Counter(label: "sb_voice_decode_errors_total")
    /// Throughput: Opus packets decoded.
    static let packetsDecoded = Counter(label: "sb_voice_uplink_packets_decoded_total")

    // MARK: Turns

    static let asrTime = Timer(label: "sb_voice_asr_seconds")
    static let llmFirstToken = Timer(label: "sb_voice_llm_first_token_seconds")
    static let ttsFirstAudio = Timer(label: "sb_voice_tts_first_audio_seconds")
    static let endOfUtterance = Timer(label: "sb_voice_end_of_utterance_delay_seconds")
    static let voiceToVoice = Timer(label: "sb_voice_voice_to_voice_seconds")
    static let turns = Counter(label: "sb_voice_turns_total")
    /// Error rate: failed turns over `sb_voice_turns_total`.
    static let turnFailures = Counter(label: "sb_voice_turn_failures_total")
    /// Turns the conversation refused (MESSAGE_REJECTED): busy, queue full.
    static let turnsRejected = Counter(label: "sb_voice_turns_rejected_total")

    // MARK: Speech engines, by stage (`asr`, `tts`)

    /// Calls of a stage's `primary` or `fallback` engine, by outcome (`ok`, `error`).
    static func engineCalls(stage: String, engine: String, outcome: String) -> Counter {
        Counter(
            label: "sb_voice_engine_calls_total",
            dimensions: [("stage", stage), ("engine", engine), ("outcome", outcome)])
    }

    static func engineFallbacks(stage: String) -> Counter {
        Counter(label: "sb_voice_engine_fallbacks_total", dimensions: [("stage", stage)])
    }

    /// 1 while the stage's primary engine is behind its open circuit.
    static func engineCircuitOpen(stage: String) -> Gauge {
        Gauge(label: "sb_voice_engine_circuit_open", dimensions: [("stage", stage)])
    }
}
