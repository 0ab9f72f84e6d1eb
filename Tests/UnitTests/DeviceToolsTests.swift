import Foundation
import SwitchboardContracts
import SwitchboardVoice
import Testing

@testable import AgentWorker

/// The gateway's MCP client of a device (initialize, tools/list pages, tools/call), the offline
/// engine's rule for calling a device tool, and the exact JSON the firmware reads.
@Suite struct DeviceToolsTests {
    static let light = DeviceTool(name: "self.light.turn_on", description: "Turn on the light")
    static let volume = DeviceTool(
        name: "self.audio_speaker.set_volume", description: "Set the volume",
        inputSchema: ["type": "object", "properties": ["volume": ["type": "integer", "minimum": 0, "maximum": 100]]])

    static func sent(_ actions: [DeviceMCPClient.Action]) -> [MCPMessage] {
        actions.compactMap { if case .send(let message) = $0 { message } else { nil } }
    }

    /// A client that went through initialize and both pages.
    static func readyClient() throws -> DeviceMCPClient {
        var client = DeviceMCPClient()
        let initialize = try #require(sent(client.start()).first)
        let firstPage = try #require(
            sent(client.receive(MCPMessage(id: initialize.id, result: ["protocolVersion": "2024-11-05"]))).last)
        let page1 = try JSONValue(encoding: MCP.ToolsListResult(tools: [light], nextCursor: "p2"))
        let secondPage = try #require(sent(client.receive(MCPMessage(id: firstPage.id, result: page1))).first)
        _ = client.receive(
            MCPMessage(id: secondPage.id, result: try JSONValue(encoding: MCP.ToolsListResult(tools: [volume]))))
        return client
    }

    @Test func initializeThenEveryPageOfToolsListThenReady() throws {
        var client = DeviceMCPClient()
        #expect(client.phase == .idle)
        let initialize = try #require(Self.sent(client.start()).first)
        #expect(initialize.method == "initialize" && initialize.id == 1)
        #expect(initialize.params?["protocolVersion"] == "2024-11-05")
        #expect(client.start().isEmpty, "started once")
        // The device's own requests and notifications, and answers to nothing asked, change nothing.
        #expect(client.receive(MCPMessage(method: "notifications/state_changed")).isEmpty)
        #expect(client.receive(MCPMessage(id: 99, result: [:])).isEmpty)
        let afterInit = Self.sent(client.receive(MCPMessage(id: 1, result: ["protocolVersion": "2024-11-05"])))
        #expect(afterInit.map(\.method) == ["notifications/initialized", "tools/list"])
        #expect(afterInit[0].id == nil)
        #expect(afterInit[1].params == ["cursor": ""])
        #expect(client.phase == .listing)
        let page1 = try JSONValue(encoding: MCP.ToolsListResult(tools: [Self.light], nextCursor: "p2"))
        let next = Self.sent(client.receive(MCPMessage(id: afterInit[1].id, result: page1)))
        #expect(next.count == 1 && next[0].method == "tools/list" && next[0].params == ["cursor": "p2"])
        #expect(next[0].id != afterInit[1].id)
        let last = client.receive(
            MCPMessage(id: next[0].id, result: try JSONValue(encoding: MCP.ToolsListResult(tools: [Self.volume]))))
        #expect(last == [.toolsListed([Self.light, Self.volume])])
        #expect(client.phase == .ready)
    }

    @Test func aRefusedInitializeLeavesTheDeviceWithoutTools() throws {
        var client = DeviceMCPClient()
        _ = client.start()
        #expect(client.receive(MCPMessage(id: 1, error: .init(code: -32601, message: "Method not found"))).isEmpty)
        #expect(client.phase == .failed("initialize: Method not found"))
        let call = DeviceToolCall(
            callId: "c1", sessionId: "s", name: "self.light.turn_on", arguments: [:], replyTo: "r")
        #expect(
            client.call(call) == [
                .finished(
                    DeviceToolResult(callId: "c1", text: "the device has no tools (MCP not ready)", isError: true),
                    replyTo: "r")
            ])
    }

    @Test func aCallIsSentAndItsAnswerGoesToTheCaller() throws {
        var client = try Self.readyClient()
        let call = DeviceToolCall(
            callId: "c1", sessionId: "s", name: "self.audio_speaker.set_volume", arguments: ["volume": 30],
            replyTo: "reply")
        let request = try #require(Self.sent(client.call(call)).first)
        #expect(
            request.method == "tools/call"
                && request.params == ["name": "self.audio_speaker.set_volume", "arguments": ["volume": 30]])
        #expect(client.pendingCalls == 1)
        let answer = try JSONValue(
            encoding: MCP.ToolsCallResult(content: [.init(type: "text", text: "ok")], isError: false))
        #expect(
            client.receive(MCPMessage(id: request.id, result: answer))
                == [.finished(DeviceToolResult(callId: "c1", text: "ok", isError: false), replyTo: "reply")])
        #expect(client.pendingCalls == 0)
        // A JSON-RPC error is an error result with its message.
        let second = try #require(Self.sent(client.call(call)).first)
        #expect(
            client.receive(MCPMessage(id: second.id, error: .init(code: -32602, message: "Invalid volume")))
                == [.finished(DeviceToolResult(callId: "c1", text: "Invalid volume", isError: true), replyTo: "reply")])
    }

    @Test func unknownToolsTooManyCallsExpiryAndCloseAreAnsweredWithErrors() throws {
        var client = try Self.readyClient()
        let start = ContinuousClock.now
        let unknown = DeviceToolCall(callId: "u", sessionId: "s", name: "self.reboot", arguments: [:], replyTo: "r")
        #expect(
            client.call(unknown, now: start) == [
                .finished(
                    DeviceToolResult(callId: "u", text: "the device has no tool self.reboot", isError: true),
                    replyTo: "r")
            ])
        for index in 0..<DeviceMCPClient.maxPendingCalls {
            let call = DeviceToolCall(
                callId: "c\(index)", sessionId: "s", name: Self.light.name, arguments: [:], replyTo: "r")
            #expect(Self.sent(client.call(call, now: start)).count == 1)
        }
        let extra = DeviceToolCall(callId: "x", sessionId: "s", name: Self.light.name, arguments: [:], replyTo: "r")
        #expect(
            client.call(extra, now: start) == [
                .finished(
                    DeviceToolResult(callId: "x", text: "too many calls waiting for the device", isError: true),
                    replyTo: "r")
            ])
        // After the timeout the waiting calls are answered, and the new one goes out.
        let later = client.call(extra, now: start + DeviceMCPClient.callTimeout)
        #expect(
            later.filter {
                if case .finished(let result, _) = $0 { result.text == "the device did not answer" } else { false }
            }.count
                == DeviceMCPClient.maxPendingCalls)
        #expect(Self.sent(later).count == 1)
        #expect(
            client.close() == [
                .finished(DeviceToolResult(callId: "x", text: "the device disconnected", isError: true), replyTo: "r")
            ])
    }

    @Test func listChangedListsEveryPageAgainAndReplacesTheTools() throws {
        let changed = MCPMessage(method: "notifications/tools/list_changed")
        // Before the first listing there is nothing to refresh: that listing reads the new tools.
        var fresh = DeviceMCPClient()
        _ = fresh.start()
        #expect(fresh.receive(changed).isEmpty)

        var client = try Self.readyClient()
        let relist = Self.sent(client.receive(changed))
        #expect(relist.count == 1 && relist[0].method == "tools/list" && relist[0].params == ["cursor": ""])
        // While the new list comes in, the old tools still answer calls, and that call's answer arrives
        // after the list has changed.
        #expect(client.phase == .ready)
        let light = DeviceToolCall(callId: "c1", sessionId: "s", name: Self.light.name, arguments: [:], replyTo: "r")
        let lightRequest = try #require(Self.sent(client.call(light)).first)
        // Changed again during the listing: one more listing when this one ends, not a second at once.
        #expect(client.receive(changed).isEmpty)
        let fan = DeviceTool(name: "self.fan.turn_on")
        let page2 = Self.sent(
            client.receive(
                MCPMessage(
                    id: relist[0].id,
                    result: try JSONValue(encoding: MCP.ToolsListResult(tools: [fan], nextCursor: "p2")))))
        #expect(page2.count == 1 && page2[0].params == ["cursor": "p2"])
        #expect(client.tools == [Self.light, Self.volume], "replaced only when the last page is in")
        let done = client.receive(
            MCPMessage(id: page2[0].id, result: try JSONValue(encoding: MCP.ToolsListResult(tools: [Self.volume]))))
        #expect(done.first == .toolsListed([fan, Self.volume]))
        let again = Self.sent(done)
        #expect(again.count == 1 && again[0].method == "tools/list" && again[0].params == ["cursor": ""])
        #expect(client.tools == [fan, Self.volume] && client.phase == .ready)
        let answer = try JSONValue(encoding: MCP.ToolsCallResult(content: [.init(type: "text", text: "on")]))
        #expect(
            client.receive(MCPMessage(id: lightRequest.id, result: answer))
                == [.finished(DeviceToolResult(callId: "c1", text: "on", isError: false), replyTo: "r")])
        #expect(
            client.call(light) == [
                .finished(
                    DeviceToolResult(callId: "c1", text: "the device has no tool self.light.turn_on", isError: true),
                    replyTo: "r")
            ])
        // A refused listing withdraws the tools: the device said they changed and cannot say how.
        #expect(
            client.receive(MCPMessage(id: again[0].id, error: .init(code: -32603, message: "busy"))) == [
                .toolsListed([])
            ])
        #expect(client.phase == .failed("tools/list: busy") && client.tools.isEmpty)
        #expect(client.receive(changed).isEmpty)
    }

    @Test func mcpMessagesAreTheFirmwaresJSON() throws {
        let initialize = MCPMessage.request(1, "initialize", params: MCP.InitializeParams())
        #expect(
            Xiaozhi.Message.mcp(initialize, sessionId: "s1").json()
                == #"{"payload":{"id":1,"jsonrpc":"2.0","method":"initialize","params":{"capabilities":{},"clientInfo":{"name":"Switchboard","version":"1.0"},"protocolVersion":"2024-11-05"}},"session_id":"s1","type":"mcp"}"#
        )
        let fromDevice = try Xiaozhi.Message.parse(
            #"{"session_id":"s1","type":"mcp","payload":{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"true"}],"isError":false}}}"#
        )
        let message = try #require(fromDevice.mcpMessage)
        #expect(message.id == 3 && message.method == nil)
        #expect(try message.result?.decode(as: MCP.ToolsCallResult.self).text == "true")
        // A tool listed without description or schema still decodes.
        let bare = try JSONDecoder().decode(DeviceTool.self, from: Data(#"{"name":"self.get_device_status"}"#.utf8))
        #expect(bare == DeviceTool(name: "self.get_device_status"))
    }

    @Test func theOfflineRuleCallsTheToolAnUtteranceNames() throws {
        let fan = DeviceTool(name: "self.fan.turn_on")
        let tools = [Self.light, fan, Self.volume]
        #expect(DeviceToolRule.choose(for: "please turn on the light", among: tools)?.tool == Self.light)
        #expect(DeviceToolRule.choose(for: "Turn on the fan!", among: tools)?.tool == fan)
        #expect(DeviceToolRule.choose(for: "what a lovely day", among: tools) == nil)
        #expect(DeviceToolRule.choose(for: "turn the light off", among: [Self.light]) == nil, "\"on\" is not heard")
        let volume = try #require(DeviceToolRule.choose(for: "set the volume to 30", among: tools))
        #expect(volume.tool == Self.volume && volume.arguments == ["volume": 30])
        #expect(DeviceToolRule.choose(for: "set volume 250", among: tools)?.arguments == ["volume": 100])
        #expect(DeviceToolRule.choose(for: "set the volume", among: tools)?.arguments == [:])
        let power = DeviceTool(
            name: "self.lamp.set_power", inputSchema: ["type": "object", "properties": ["on": ["type": "boolean"]]])
        #expect(DeviceToolRule.choose(for: "set power off for the lamp", among: [power])?.arguments == ["on": false])
        #expect(
            DeviceToolRule.answer(tool: "self.light.turn_on", result: .init(callId: "c", text: "true", isError: false))
                == "Done. I called self.light.turn_on on your device and it answered: true.")
        #expect(
            DeviceToolRule.answer(
                tool: "t", result: .init(callId: "c", text: "the device did not answer", isError: true))
                == "I tried t on your device, but it failed: the device did not answer.")
    }
}
