/// The recogniser and synthesiser every session of the worker shares, each behind its failover.
public struct VoiceEngines: Sendable {
    public var recognizer: any SpeechRecognizer
    public var synthesizer: any SpeechSynthesizer

    public init(recognizer: any SpeechRecognizer, synthesizer: any SpeechSynthesizer) {
        self.recognizer = recognizer
        self.synthesizer = synthesizer
    }
}
