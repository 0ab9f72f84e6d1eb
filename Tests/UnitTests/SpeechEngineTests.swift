import Foundation
import SwitchboardVoice
import Testing
import VoiceWorker

/// The offline engines for real: eSpeak NG speaks, PocketSphinx hears. Both are required (Debian's
/// espeak-ng, pocketsphinx-en-us): a missing one fails these tests.
@Suite(.serialized) struct SpeechEngineTests {
    static let recognizer: PocketSphinxRecognizer = {
        try! PocketSphinxRecognizer()
    }()

    @Test func espeakSpeaksAt24Kilohertz() async throws {
        let synthesizer = try EspeakSynthesizer()
        let pcm = try await synthesizer.synthesize("Hello there, this is Switchboard.", sampleRate: 24_000)
        // Roughly two seconds of audible speech.
        #expect(pcm.count > 24_000 && pcm.count < 24_000 * 5)
        #expect(VoiceActivityDetector.rms(pcm) > 500)
    }

    /// Through a device's path: eSpeak at 16 kHz, Opus 60 ms frames at 32 kbps, decoded, recognised.
    @Test(arguments: ["good morning", "hello world"])
    func pocketSphinxRecognisesESpeakThroughOpus(phrase: String) async throws {
        let synthesizer = try EspeakSynthesizer(voice: "en-us", wordsPerMinute: 130)
        let pcm = try await synthesizer.synthesize(phrase, sampleRate: 16_000)
        // An utterance as the VAD hands it over: pre-roll and trailing silence around the speech.
        let silence = [Int16](repeating: 0, count: 9600)
        let encoder = try OpusEncoder(format: .uplink, bitrate: 32_000)
        let decoder = try OpusDecoder(format: .uplink)
        var heardAudio: [Int16] = []
        for packet in try encoder.encodeAll(silence + pcm + silence) { heardAudio += try decoder.decode(packet) }
        let heard = try await Self.recognizer.transcribe(heardAudio, sampleRate: 16_000)
        let words = heard.split(separator: " ")
        #expect(phrase.split(separator: " ").allSatisfy { words.contains($0) }, "heard \(heard)")
    }

    @Test func silenceIsNoText() async throws {
        let heard = try await Self.recognizer.transcribe([Int16](repeating: 0, count: 16_000), sampleRate: 16_000)
        #expect(heard.isEmpty)
    }

    @Test func onlySixteenKilohertzIsAccepted() async throws {
        await #expect(throws: RecognizerError.self) { try await Self.recognizer.transcribe([0, 0], sampleRate: 8_000) }
    }
}
