import ArgumentParser
import Foundation
import Synchronization
import SwitchboardRuntime
import Testing

@testable import VoiceWorker

/// ASR/TTS engines: retries, the circuit breaker over the primary engine, the fallback.
@Suite struct SpeechFailoverTests {
    struct Broken: Error {}

    /// An engine that fails its first `failures` calls, counting them.
    final class Engine: SpeechRecognizer, SpeechSynthesizer {
        let failures: Int
        let calls = Atomic<Int>(0)
        let answer: String

        init(failures: Int, answer: String) {
            self.failures = failures
            self.answer = answer
        }

        func transcribe(_ samples: [Int16], sampleRate: Int) async throws -> String {
            let call = calls.add(1, ordering: .relaxed).newValue
            if call <= failures { throw Broken() }
            return answer
        }

        func synthesize(_ text: String, sampleRate: Int) async throws -> [Int16] {
            let call = calls.add(1, ordering: .relaxed).newValue
            if call <= failures { throw Broken() }
            return [Int16(answer.count)]
        }

        var count: Int { calls.load(ordering: .relaxed) }
    }

    static let fast = SpeechFailoverPolicy(
        retries: 1, retryDelay: .milliseconds(1), failureThreshold: 2, openDuration: .seconds(60))

    @Test func aRetryHidesOneFailure() async throws {
        let primary = Engine(failures: 1, answer: "primary")
        let fallback = Engine(failures: 0, answer: "fallback")
        let recognizer = FailoverRecognizer(primary: primary, fallback: fallback, policy: Self.fast)
        #expect(try await recognizer.transcribe([], sampleRate: 16_000) == "primary")
        #expect(primary.count == 2 && fallback.count == 0)
        #expect(recognizer.failover.state == .closed(failures: 0))
    }

    @Test func theFallbackAnswersAndTheCircuitOpensAfterRepeatedFailures() async throws {
        let primary = Engine(failures: .max, answer: "primary")
        let fallback = Engine(failures: 0, answer: "fallback")
        let recognizer = FailoverRecognizer(primary: primary, fallback: fallback, policy: Self.fast)
        // Call 1: two tries (one retry), then the fallback.
        #expect(try await recognizer.transcribe([], sampleRate: 16_000) == "fallback")
        #expect(primary.count == 2 && fallback.count == 1)
        #expect(recognizer.failover.state == .closed(failures: 1))
        // Call 2 opens the circuit; call 3 goes straight to the fallback.
        #expect(try await recognizer.transcribe([], sampleRate: 16_000) == "fallback")
        guard case .open = recognizer.failover.state else { Issue.record("circuit not open"); return }
        #expect(try await recognizer.transcribe([], sampleRate: 16_000) == "fallback")
        #expect(primary.count == 4 && fallback.count == 3)
    }

    @Test func afterTheOpenWindowOneTrialDecides() async throws {
        let policy = SpeechFailoverPolicy(
            retries: 0, retryDelay: .milliseconds(1), failureThreshold: 1, openDuration: .milliseconds(50))
        let primary = Engine(failures: 1, answer: "primary")
        let synthesizer = FailoverSynthesizer(
            primary: primary, fallback: Engine(failures: 0, answer: "fb"), policy: policy)
        #expect(try await synthesizer.synthesize("x", sampleRate: 24_000) == [2])  // the fallback's "fb"
        guard case .open = synthesizer.failover.state else { Issue.record("circuit not open"); return }
        try await Task.sleep(for: .milliseconds(80))
        // The trial succeeds: the primary is back and the circuit closed.
        #expect(try await synthesizer.synthesize("x", sampleRate: 24_000) == [7])
        #expect(synthesizer.failover.state == .closed(failures: 0))
    }

    @Test func withoutAFallbackTheEnginesErrorIsTheAnswer() async throws {
        let recognizer = FailoverRecognizer(
            primary: Engine(failures: .max, answer: ""), fallback: nil, policy: Self.fast)
        await #expect(throws: Broken.self) { try await recognizer.transcribe([], sampleRate: 16_000) }
        await #expect(throws: Broken.self) { try await recognizer.transcribe([], sampleRate: 16_000) }
        // Open: no call at all, a clear error.
        await #expect(throws: SpeechEngineUnavailable.self) { try await recognizer.transcribe([], sampleRate: 16_000) }
    }

    @Test func fallbacksFollowThePrimaryEngine() throws {
        var settings = VoiceSettings()
        #expect(settings.asrFallbackEngine == nil && settings.ttsFallbackEngine == nil)
        settings.asrEngine = .openai
        settings.ttsEngine = .openai
        #expect(settings.asrFallbackEngine == .pocketsphinx && settings.ttsFallbackEngine == .espeak)
        settings.asrFallback = "none"
        #expect(settings.asrFallbackEngine == nil)
        let parsed = try VoiceSettings.Options.parse([]).settings(environment: [
            "SWITCHBOARD_VOICE_TTS_FALLBACK": "none", "SWITCHBOARD_VOICE_ENGINE_RETRIES": "2",
            "SWITCHBOARD_VOICE_ENGINE_OPEN_SECONDS": "5",
        ])
        #expect(
            parsed.ttsFallback == "none" && parsed.failover.retries == 2 && parsed.failover.openDuration == .seconds(5))
        #expect(throws: (any Error).self) {
            try VoiceSettings.Options.parse([]).settings(environment: ["SWITCHBOARD_VOICE_ASR_FALLBACK": "whisper"])
        }
    }
}
