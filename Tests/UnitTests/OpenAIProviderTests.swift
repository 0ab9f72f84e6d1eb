import AsyncHTTPClient
import Foundation
import NIOCore
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

@testable import AgentWorker

@Suite(.serialized, .timeLimit(.minutes(2))) struct OpenAIProviderTests {
    static let request = ProviderRequest(
        role: "Kulu", responsibility: "researcher", systemPrompt: "You are Kulu.", userMessage: "hello",
        contributions: [RoleContribution(role: "Alex", status: "completed", content: "Alex's view")],
        history: [
            ConversationTurn(role: "user", content: "earlier"), ConversationTurn(role: "assistant", content: "answer"),
        ])

    /// Runs `body` with the fake server listening and an HTTP client.
    func withServer(_ body: @escaping @Sendable (FakeOpenAI, Int, HTTPClient) async throws -> Void) async throws {
        let fake = FakeOpenAI()
        try await fake.withServer { port in
            let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: Providers.httpConfiguration)
            do {
                try await body(fake, port, http)
            } catch {
                try await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
    }

    func provider(_ scenario: String, port: Int, client: HTTPClient, breakers: CircuitBreakers = CircuitBreakers())
        -> ResilientProvider
    {
        let spec = ProviderSpec(
            kind: "openai", baseURL: "http://127.0.0.1:\(port)/\(scenario)/v1", model: "fake-model", apiKeyEnv: "K")
        return ResilientProvider(
            base: OpenAIProvider(spec: spec, apiKey: "sk-test", client: client), breakerKey: spec.breakerKey,
            breakers: breakers,
            policy: .init(maxRetries: 3, retryDelay: .milliseconds(10), backoffFactor: 2))
    }

    @Test func streamsTheDeltasUntilDone() async throws {
        try await withServer { fake, port, client in
            let deltas = Locked<[String]>([])
            try await provider("ok", port: port, client: client).stream(Self.request) { delta in
                deltas.withLock { $0.append(delta) }
            }
            #expect(deltas.withLock { $0 } == FakeOpenAI.deltas)
            #expect(deltas.withLock { $0 }.joined() == "Hello, 世界 👨‍👩‍👧 done.")
            let sent =
                try JSONSerialization.jsonObject(with: Data(fake.bodies.withLock { $0[0] }.utf8)) as! [String: Any]
            #expect(sent["model"] as? String == "fake-model" && sent["stream"] as? Bool == true)
            let messages = sent["messages"] as! [[String: String]]
            #expect(messages.map { $0["role"]! } == ["system", "user", "assistant", "user"])
            #expect(messages.last?["content"]?.contains("Alex: Alex's view") == true)
            #expect(fake.authorizations.withLock { $0 } == ["Bearer sk-test"])
        }
    }

    @Test func retriesA429AndA500ThenSucceeds() async throws {
        try await withServer { fake, port, client in
            let deltas = Locked<[String]>([])
            try await provider("flaky", port: port, client: client).stream(Self.request) { delta in
                deltas.withLock { $0.append(delta) }
            }
            #expect(deltas.withLock { $0 }.joined() == FakeOpenAI.deltas.joined())
            #expect(fake.count("flaky") == 3)
        }
    }

    @Test func givesUpAfterThreeRetriesAndSaysWhy() async throws {
        try await withServer { fake, port, client in
            let error = await #expect(throws: ProviderError.self) {
                try await provider("broken", port: port, client: client).stream(Self.request) { _ in }
            }
            #expect(error?.status == 500 && error?.message.contains("server had an error") == true)
            // Seed 001: the first try and 3 retries; the error says how many were made.
            #expect(fake.count("broken") == 4)
            #expect(error?.retries == 3)
        }
    }

    @Test func clientErrorsAreNotRetried() async throws {
        try await withServer { fake, port, client in
            let error = await #expect(throws: ProviderError.self) {
                try await provider("unauthorized", port: port, client: client).stream(Self.request) { _ in }
            }
            #expect(error?.status == 401 && error?.message == "Incorrect API key provided: sk-bad.")
            #expect(fake.count("unauthorized") == 1)
        }
    }

    @Test func aStreamCutMidwayFailsWithWhatCameAndIsNotRepeated() async throws {
        try await withServer { fake, port, client in
            let deltas = Locked<[String]>([])
            let error = await #expect(throws: ProviderError.self) {
                try await provider("cut", port: port, client: client).stream(Self.request) { delta in
                    deltas.withLock { $0.append(delta) }
                }
            }
            #expect(error?.code == .disconnected)
            #expect(deltas.withLock { $0 } == Array(FakeOpenAI.deltas.prefix(2)))
            // Text already reached the client: a retry would repeat it.
            #expect(fake.count("cut") == 1)
        }
    }

    @Test func anErrorInsideTheStreamIsReported() async throws {
        try await withServer { _, port, client in
            let error = await #expect(throws: ProviderError.self) {
                try await provider("instream-error", port: port, client: client).stream(Self.request) { _ in }
            }
            #expect(error?.code == .streamError && error?.message == "model overloaded")
        }
    }

    @Test func theBreakerOpensAndStopsCallingTheProvider() async throws {
        try await withServer { fake, port, client in
            let breakers = CircuitBreakers(template: CircuitBreaker(failureThreshold: 3, openDuration: .seconds(60)))
            let broken = provider("broken", port: port, client: client, breakers: breakers)
            await #expect(throws: ProviderError.self) { try await broken.stream(Self.request) { _ in } }
            #expect(fake.count("broken") == 3)
            let error = await #expect(throws: ProviderError.self) { try await broken.stream(Self.request) { _ in } }
            #expect(error?.code == .circuitOpen)
            #expect(fake.count("broken") == 3)
        }
    }

    /// Function calling on the wire: the tools go out as functions, the streamed `tool_calls` come
    /// back whole, and the request with the results gets the answer built from them.
    @Test func toolCallsStreamInPiecesAndTheResultsGetTheAnswer() async throws {
        try await withServer { fake, port, client in
            let volume = DeviceTool(
                name: "self.audio_speaker.set_volume", description: "Set the volume",
                inputSchema: ["type": "object", "properties": ["volume": ["type": "integer"]]])
            var request = ProviderRequest(
                role: "Alex", userMessage: "set the volume to 30",
                tools: [DeviceTool(name: "self.light.turn_on"), volume])
            let provider = provider("tools", port: port, client: client)
            let calls = try await provider.stream(request) { delta in Issue.record("no text expected, got \(delta)") }
            let call = try #require(calls.first)
            #expect(calls.count == 1 && call.id.hasPrefix("call_"))
            #expect(call.name == "self_audio_speaker_set_volume" && call.arguments == #"{"volume":30}"#)
            let offered = try JSONDecoder().decode(JSONValue.self, from: Data(fake.bodies.withLock { $0[0] }.utf8))
            #expect(
                offered["tools"]?.arrayValue?.compactMap { $0["function"]?["name"]?.stringValue }
                    == ["self_light_turn_on", "self_audio_speaker_set_volume"])

            request.toolRounds = [ToolRound(calls: calls, results: [call.id: "volume is now 30"])]
            let deltas = Locked<[String]>([])
            let more = try await provider.stream(request) { delta in deltas.withLock { $0.append(delta) } }
            #expect(more.isEmpty)
            #expect(deltas.withLock { $0 }.joined() == "The device answered: volume is now 30. ")
            let sent = try JSONDecoder().decode(JSONValue.self, from: Data(fake.bodies.withLock { $0[1] }.utf8))
            #expect(
                sent["messages"]?.arrayValue?.last == [
                    "role": "tool", "content": "volume is now 30", "tool_call_id": .string(call.id),
                ])
        }
    }

    @Test func aClosedPortIsAConnectErrorRetriedThreeTimes() async throws {
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: Providers.httpConfiguration)
        let port = ServiceProcesses.freePort()
        let started = ContinuousClock.now
        let error = await #expect(throws: ProviderError.self) {
            try await provider("ok", port: port, client: client).stream(Self.request) { _ in }
        }
        try await client.shutdown()
        #expect(error?.code == .connect)
        // Three backoff waits, 20, 40 then 80 ms, and no waiting on the refused connections.
        #expect(error?.retries == 3)
        #expect(ContinuousClock.now - started >= .milliseconds(140))
        #expect(ContinuousClock.now - started < .seconds(5))
    }
}
