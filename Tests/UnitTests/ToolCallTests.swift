import AsyncHTTPClient
import Foundation
import SwitchboardContracts
import SwitchboardTestSupport
import Testing

@testable import AgentWorker

/// OpenAI function calling for device tools: names OpenAI accepts and back, `tool_calls` pieces put
/// together, and the request body of a round that follows tool calls.
@Suite struct ToolCallTests {
    typealias Piece = ToolCallAccumulator.Piece

    @Test func deviceNamesBecomeOpenAINamesAndBack() {
        let long = "self." + String(repeating: "x", count: 80)
        let names = ToolNames([
            DeviceTool(name: "self.light.set"), DeviceTool(name: "self_light_set"), DeviceTool(name: "self.light-set"),
            DeviceTool(name: "灯.开"), DeviceTool(name: long), DeviceTool(name: long + "y"), DeviceTool(name: ""),
        ])
        #expect(
            names.wireNames == [
                "self_light_set", "self_light_set_2", "self_light-set", "___",
                "self_" + String(repeating: "x", count: 59), "self_" + String(repeating: "x", count: 57) + "_2", "tool",
            ])
        #expect(
            names.wireNames.allSatisfy { name in
                (1...64).contains(name.count)
                    && name.unicodeScalars.allSatisfy {
                        $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "_-".unicodeScalars.contains($0))
                    }
            })
        #expect(names.deviceName(for: "self_light_set") == "self.light.set")
        #expect(names.deviceName(for: "self_light_set_2") == "self_light_set")
        #expect(names.deviceName(for: "___") == "灯.开")
        #expect(names.deviceName(for: "self_" + String(repeating: "x", count: 57) + "_2") == long + "y")
        #expect(names.deviceName(for: "self.light.set") == nil, "only wire names map back")
        #expect(names.deviceName(for: "reboot") == nil)
    }

    @Test func streamedPiecesMakeWholeCallsInIndexOrder() {
        var calls = ToolCallAccumulator()
        #expect(calls.toolCalls.isEmpty)
        // Two parallel calls, their argument pieces interleaved, as OpenAI streams them.
        calls.add(Piece(index: 0, id: "call_a", function: .init(name: "self_light_turn_on", arguments: "")))
        calls.add(
            Piece(index: 1, id: "call_b", function: .init(name: "self_audio_speaker_set_volume", arguments: "{\"vo")))
        calls.add(Piece(index: 0, function: .init(arguments: "{}")))
        calls.add(Piece(index: 1, function: .init(arguments: "lume\": ")))
        calls.add(Piece(index: 1, id: "", function: .init(arguments: "30}")))
        #expect(
            calls.toolCalls == [
                ToolCall(id: "call_a", name: "self_light_turn_on", arguments: "{}"),
                ToolCall(id: "call_b", name: "self_audio_speaker_set_volume", arguments: "{\"volume\": 30}"),
            ])
        // A server that leaves out index and id: one call, named call_0.
        var bare = ToolCallAccumulator()
        bare.add(Piece(index: nil, function: .init(name: "self_light_turn_on")))
        bare.add(Piece(index: nil, function: .init(arguments: "{}")))
        #expect(bare.toolCalls == [ToolCall(id: "call_0", name: "self_light_turn_on", arguments: "{}")])
    }

    @Test func piecesDecodeFromOpenAIsWireFormat() throws {
        let json =
            #"[{"index":0,"id":"call_x","type":"function","function":{"name":"f","arguments":""}},{"index":0,"function":{"arguments":"{\"a\":1}"}}]"#
        var calls = ToolCallAccumulator()
        for piece in try JSONDecoder().decode([Piece].self, from: Data(json.utf8)) { calls.add(piece) }
        #expect(calls.toolCalls == [ToolCall(id: "call_x", name: "f", arguments: #"{"a":1}"#)])
    }

    @Test func theBodyOffersTheToolsAndCarriesTheRoundsSoFar() throws {
        let volume = DeviceTool(
            name: "self.audio_speaker.set_volume", description: "Set the volume",
            inputSchema: ["type": "object", "properties": ["volume": ["type": "integer"]]])
        let provider = OpenAIProvider(
            spec: ProviderSpec(kind: "openai", baseURL: "http://127.0.0.1:1/v1", model: "m"), apiKey: nil,
            client: .shared)
        var request = ProviderRequest(
            role: "Alex", systemPrompt: "You are Alex.", userMessage: "volume 30", tools: [volume])
        let first = try JSONDecoder().decode(JSONValue.self, from: provider.body(for: request))
        #expect(
            first["tools"] == [
                [
                    "type": "function",
                    "function": [
                        "name": "self_audio_speaker_set_volume", "description": "Set the volume",
                        "parameters": ["type": "object", "properties": ["volume": ["type": "integer"]]],
                    ],
                ]
            ])
        #expect(first["tool_choice"] == nil)
        #expect(first["messages"]?.arrayValue?.count == 2)

        request.toolRounds = [
            ToolRound(
                text: "One moment.",
                calls: [ToolCall(id: "call_1", name: "self_audio_speaker_set_volume", arguments: #"{"volume":30}"#)],
                results: ["call_1": "volume is now 30"])
        ]
        request.mayCallTools = false
        let next = try JSONDecoder().decode(JSONValue.self, from: provider.body(for: request))
        let messages = try #require(next["messages"]?.arrayValue)
        #expect(messages.map { $0["role"]?.stringValue } == ["system", "user", "assistant", "tool"])
        #expect(
            messages[2] == [
                "role": "assistant", "content": "One moment.",
                "tool_calls": [
                    [
                        "id": "call_1", "type": "function",
                        "function": ["name": "self_audio_speaker_set_volume", "arguments": #"{"volume":30}"#],
                    ]
                ],
            ])
        #expect(messages[3] == ["role": "tool", "content": "volume is now 30", "tool_call_id": "call_1"])
        #expect(next["tool_choice"] == "none", "the last round must answer")
        #expect(next["tools"]?.arrayValue?.count == 1, "still listed: the rounds refer to them")
    }

    /// A model that calls tools by a script: request n gets the calls `rounds[n]` after the text
    /// "(round n) "; past the script it answers "answer" and calls nothing.
    struct ScriptedModel: ChatProvider {
        let rounds: [[ToolCall]]
        let requests = Locked<[ProviderRequest]>([])

        var kind: ProviderKind { .openai }

        func stream(_ request: ProviderRequest, onDelta: (String) async throws -> Void) async throws -> [ToolCall] {
            let number = requests.withLock { requests in
                requests.append(request)
                return requests.count - 1
            }
            guard number < rounds.count else {
                try await onDelta("answer")
                return []
            }
            try await onDelta("(round \(number)) ")
            return rounds[number]
        }
    }

    /// A device that answers every call; `self.door.open` fails (it is jammed).
    final class Device: DeviceToolCalling {
        let calls = Locked<[(name: String, arguments: JSONValue)]>([])

        func call(_ toolbox: DeviceToolbox, name: String, arguments: JSONValue) async -> DeviceToolResult {
            calls.withLock { $0.append((name, arguments)) }
            return name == "self.door.open"
                ? DeviceToolResult(callId: "c", text: "jammed", isError: true)
                : DeviceToolResult(callId: "c", text: "done \(name)", isError: false)
        }
    }

    static let toolbox = DeviceToolbox(
        sessionId: "s", gateway: "g",
        tools: [
            DeviceTool(name: "self.light.turn_on"), DeviceTool(name: "self.door.open"),
            DeviceTool(
                name: "self.audio_speaker.set_volume",
                inputSchema: ["type": "object", "properties": ["volume": ["type": "integer"]]]),
        ])

    static func provider(_ model: ScriptedModel, _ device: Device) -> any ChatProvider {
        DeviceToolProvider.wrap(
            model, toolbox: toolbox, caller: device, offline: OfflineProvider(engine: OfflineEngine()))
    }

    static func answer(_ provider: any ChatProvider, to request: ProviderRequest) async throws -> String {
        let text = Locked("")
        try await provider.stream(request) { delta in text.withLock { $0 += delta } }
        return text.withLock { $0 }
    }

    @Test func theModelsCallsGoToTheDeviceAndTheirResultsBackToTheModel() async throws {
        let first = [
            ToolCall(id: "call_1", name: "self_light_turn_on", arguments: ""),
            ToolCall(id: "call_2", name: "self_audio_speaker_set_volume", arguments: #"{"volume":30}"#),
        ]
        let second = [
            ToolCall(id: "call_3", name: "reboot", arguments: "{}"),
            ToolCall(id: "call_4", name: "self_light_turn_on", arguments: "[1]"),
            ToolCall(id: "call_5", name: "self_door_open", arguments: " "),
        ]
        let model = ScriptedModel(rounds: [first, second])
        let device = Device()
        let text = try await Self.answer(
            Self.provider(model, device), to: ProviderRequest(role: "Alex", userMessage: "lights on, volume 30"))
        // One answer, every round's text in order.
        #expect(text == "(round 0) (round 1) answer")
        let calls = device.calls.withLock { $0 }
        #expect(calls.map(\.name) == ["self.light.turn_on", "self.audio_speaker.set_volume", "self.door.open"])
        #expect(calls.map(\.arguments) == [[:], ["volume": 30], [:]])
        let requests = model.requests.withLock { $0 }
        #expect(requests.count == 3)
        #expect(requests.allSatisfy { $0.tools == Self.toolbox.tools && $0.mayCallTools })
        #expect(
            requests[2].toolRounds == [
                ToolRound(
                    text: "(round 0) ", calls: first,
                    results: ["call_1": "done self.light.turn_on", "call_2": "done self.audio_speaker.set_volume"]),
                ToolRound(
                    text: "(round 1) ", calls: second,
                    results: [
                        "call_3": "error: the device has no tool reboot",
                        "call_4": "error: the arguments are not a JSON object: [1]",
                        "call_5": "error: jammed",
                    ]),
            ])
    }

    @Test func roundsAndCallsPerRoundAreBounded() async throws {
        let light = ToolCall(id: "l", name: "self_light_turn_on", arguments: "{}")
        let many = (1...10).map { ToolCall(id: "call_\($0)", name: "self_light_turn_on", arguments: "{}") }
        let model = ScriptedModel(rounds: [many, [light], [light], [light]])
        let device = Device()
        let error = await #expect(throws: ProviderError.self) {
            try await Self.answer(
                Self.provider(model, device), to: ProviderRequest(role: "Alex", userMessage: "lights"))
        }
        #expect(error?.code == .malformed)
        let requests = model.requests.withLock { $0 }
        // Three rounds of calls; the fourth request forbids more (tool_choice none), and this model ignored it.
        #expect(requests.map(\.mayCallTools) == [true, true, true, false])
        #expect(device.calls.withLock { $0 }.count == DeviceToolCall.maxWaiting + 2)
        let results = requests[1].toolRounds[0].results
        #expect(results["call_8"] == "done self.light.turn_on")
        #expect(results["call_9"] == "error: too many calls in one round; at most \(DeviceToolCall.maxWaiting)")
    }

    @Test func aResumedAnswerGoesOnWithoutTools() async throws {
        let model = ScriptedModel(rounds: [])
        let device = Device()
        let request = ProviderRequest(role: "Alex", userMessage: "lights on", answerSoFar: "I turned")
        #expect(try await Self.answer(Self.provider(model, device), to: request) == "answer")
        #expect(model.requests.withLock { $0 }.map(\.tools) == [[]])
        #expect(device.calls.withLock { $0 }.isEmpty)
    }
}
