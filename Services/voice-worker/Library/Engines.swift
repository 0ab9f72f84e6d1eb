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
