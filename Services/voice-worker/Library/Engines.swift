import Foundation
import SwitchboardVoice

/// Speech to text for one utterance. Implementations run their work off the cooperative pool.
public protocol SpeechRecognizer: Sendable {
    func transcribe(_ samples: [Int16], sampleRate: Int) async throws -> String
}

/// Text to 16-bit mono PCM at `sampleRate`. Implementations run their work off the cooperative pool.
public protocol SpeechSynthesizer: Sendable {
    func synthesize(_ text: String, sampleRate: Int) async throws -> [Int16]
}

public struct RecognizerError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension EspeakSynthesizer: SpeechSynthesizer {}

/// Benchmark engines (`SWITCHBOARD_VOICE_ASR_ENGINE=instant`, `…_TTS_ENGINE=instant`): they answer at
/// once so a benchmark measures the pipeline, not the engines. Not for devices: the recogniser hears
/// no words and the synthesiser speaks a tone.
public struct InstantRecognizer: SpeechRecognizer {
    public init() {}

    /// A sentence that says how long the utterance was, so the conversation has something to answer.
    public func transcribe(_ samples: [Int16], sampleRate: Int) async throws -> String {
        "an utterance of \(samples.count * 1000 / max(1, sampleRate)) milliseconds"
    }
}

public struct InstantSynthesizer: SpeechSynthesizer {
    public init() {}

    /// 100 ms of a 220 Hz tone per word.
    public func synthesize(_ text: String, sampleRate: Int) async throws -> [Int16] {
        let count = max(1, text.split(whereSeparator: \.isWhitespace).count) * sampleRate / 10
        return (0..<count).map { Int16(6000 * sin(2 * Double.pi * 220 * Double($0) / Double(sampleRate))) }
    }
}
