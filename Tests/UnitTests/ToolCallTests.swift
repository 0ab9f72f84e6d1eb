import AsyncHTTPClient
import Foundation
import SwitchboardContracts
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
        #expect(names.wireNames == [
            "self_light_set", "self_light_set_2", "self_light-set", "___",
            "self_" + String(repeating: "x", count: 59), "self_" + String(repeating: "x", count: 57) + "_2", "tool",
        ])
        #expect(names.wireNames.allSatisfy { name in
            (1...64).contains(name.count) && name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "_-".unicodeScalars.contains($0)) }
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
        calls.add(Piece(index: 1, id: "call_b", function: .init(name: "self_audio_speaker_set_volume", arguments: "{\"vo")))
        calls.add(Piece(index: 0, function: .init(arguments: "{}")))
        calls.add(Piece(index: 1, function: .init(arguments: "lume\": ")))
        calls.add(Piece(index: 1, id: "", function: .init(arguments: "30}")))
        #expect(calls.toolCalls == [
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
        let json = #"[{"index":0,"id":"call_x","type":"function","function":{"name":"f","arguments":""}},{"index":0,"function":{"arguments":"{\"a\":1}"}}]"#
        var calls = ToolCallAccumulator()
        for piece in try JSONDecoder().decode([Piece].self, from: Data(json.utf8)) { calls.add(piece) }
        #expect(calls.toolCalls == [ToolCall(id: "call_x", name: "f", arguments: #"{"a":1}"#)])
    }

    @Test func theBodyOffersTheToolsAndCarriesTheRoundsSoFar() throws {
        let volume = DeviceTool(
            name: "self.audio_speaker.set_volume", description: "Set the volume",
            inputSchema: ["type": "object", "properties": ["volume": ["type": "integer"]]])
        let provider = OpenAIProvider(
            spec: ProviderSpec(kind: "openai", baseURL: "http://127.0.0.1:1/v1", model: "m"), apiKey: nil, client: .shared)
        var request = ProviderRequest(role: "Alex", systemPrompt: "You are Alex.", userMessage: "volume 30", tools: [volume])
        let first = try JSONDecoder().decode(JSONValue.self, from: provider.body(for: request))
        #expect(first["tools"] == [[
            "type": "function",
            "function": ["name": "self_audio_speaker_set_volume", "description": "Set the volume",
                         "parameters": ["type": "object", "properties": ["volume": ["type": "integer"]]]],
        ]])
        #expect(first["tool_choice"] == nil)
        #expect(first["messages"]?.arrayValue?.count == 2)

        request.toolRounds = [ToolRound(
            text: "One moment.", calls: [ToolCall(id: "call_1", name: "self_audio_speaker_set_volume", arguments: #"{"volume":30}"#)],
            results: ["call_1": "volume is now 30"])]
        request.mayCallTools = false
        let next = try JSONDecoder().decode(JSONValue.self, from: provider.body(for: request))
        let messages = try #require(next["messages"]?.arrayValue)
        #expect(messages.map { $0["role"]?.stringValue } == ["system", "user", "assistant", "tool"])
        #expect(messages[2] == [
            "role": "assistant", "content": "One moment.",
            "tool_calls": [["id": "call_1", "type": "function",
                            "function": ["name": "self_audio_speaker_set_volume", "arguments": #"{"volume":30}"#]]],
        ])
        #expect(messages[3] == ["role": "tool", "content": "volume is now 30", "tool_call_id": "call_1"])
        #expect(next["tool_choice"] == "none", "the last round must answer")
        #expect(next["tools"]?.arrayValue?.count == 1, "still listed: the rounds refer to them")
    }
}
