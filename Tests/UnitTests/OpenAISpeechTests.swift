import AsyncHTTPClient
import Foundation
import SwitchboardTestSupport
import SwitchboardVoice
import Testing
import VoiceWorker

/// The OpenAI-compatible speech providers against a local server speaking the same wire format.
@Suite(.serialized) struct OpenAISpeechTests {
    static func withProviders(
        scenario: String = "ok",
        _ body: @escaping @Sendable (OpenAITranscriber, OpenAISynthesizer, FakeOpenAI) async throws -> Void
    ) async throws {
        let fake = FakeOpenAI()
        try await fake.withServer { port in
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            var configuration = OpenAISpeechConfiguration()
            configuration.baseURL = "http://127.0.0.1:\(port)/\(scenario)/v1/"
            configuration.apiKey = "sk-test"
            do {
                try await body(
                    OpenAITranscriber(configuration: configuration, client: client),
                    OpenAISynthesizer(configuration: configuration, client: client), fake)
            } catch {
                try? await client.shutdown()
                throw error
            }
            try await client.shutdown()
        }
    }

    @Test func transcriptionSendsTheUtteranceAsAWAVForm() async throws {
        try await Self.withProviders { transcriber, _, fake in
            let text = try await transcriber.transcribe([Int16](repeating: 100, count: 16_000), sampleRate: 16_000)
            #expect(text == FakeOpenAI.transcription)
            #expect(fake.count("transcriptions") == 1)
            #expect(fake.authorizations.withLock { $0 } == ["Bearer sk-test"])
            let form = try #require(fake.bodies.withLock { $0.first })
            #expect(form.contains("whisper-1"))
        }
    }

    @Test func speechComesBackAsPCMAtTheAskedRate() async throws {
        try await Self.withProviders { _, synthesizer, fake in
            let at24 = try await synthesizer.synthesize("one two three", sampleRate: 24_000)
            #expect(at24.count == 3 * 2400)
            #expect(VoiceActivityDetector.rms(at24) > 4000)
            let at16 = try await synthesizer.synthesize("one two three", sampleRate: 16_000)
            #expect(abs(at16.count - 3 * 1600) <= 1)
            let request = try #require(fake.bodies.withLock { $0.first })
            #expect(request.contains(#""response_format":"pcm""#) && request.contains(#""voice":"alloy""#))
        }
    }

    @Test func anErrorStatusThrowsWithTheServiceMessage() async throws {
        try await Self.withProviders(scenario: "unauthorized") { transcriber, synthesizer, _ in
            await #expect(throws: SpeechServiceError.self) {
                try await transcriber.transcribe([0, 0, 0], sampleRate: 16_000)
            }
            do {
                _ = try await synthesizer.synthesize("hello", sampleRate: 24_000)
                Issue.record("a 401 must throw")
            } catch let error as SpeechServiceError {
                #expect(error.status == 401)
                #expect(error.message.contains("Incorrect API key"))
            }
        }
    }

    @Test func wavEncodesWhatWAVParses() throws {
        let samples: [Int16] = [0, 1, -1, .max, .min]
        let audio = try WAV.parse(WAV.encode(samples, sampleRate: 16_000))
        #expect(audio == WAV.Audio(sampleRate: 16_000, samples: samples))
    }
}
