import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import SwitchboardContracts
import SwitchboardRedis

/// Where an agent's device tool calls go: `DeviceToolCaller`, or a test's stand-in.
protocol DeviceToolCalling: Sendable {
    /// The device's answer, or an error result (never throws: a failed call is an answer too).
    func call(_ toolbox: DeviceToolbox, name: String, arguments: JSONValue) async -> DeviceToolResult
}

/// Calls a voice device's MCP tools (docs/voice.md#device-tools): each call is published to the
/// gateway holding the device's socket (`Keyspace.PubSub.deviceToolCalls(gateway:)`), which sends `tools/call`
/// and publishes the device's answer to this worker's reply channel. A service: it follows the reply
/// channel for the worker's whole life.
final class DeviceToolCaller: Service, DeviceToolCalling {
    private enum Waiter {
        case waiting(CheckedContinuation<DeviceToolResult, Never>?)
        case arrived(DeviceToolResult)
    }

    let redis: RedisClient
    let subscriber: RedisSubscriber
    let replyChannel: String
    /// Longer than the gateway's own (`DeviceMCPClient.callTimeout`, 10 s), which answers first when
    /// the device is connected; this one covers a gateway that is gone.
    let timeout: Duration
    private let waiters = Mutex<[String: Waiter]>([:])
    private let listening = Atomic<Bool>(false)

    init(redis: RedisClient, subscriber: RedisSubscriber, instance: String, timeout: Duration = .seconds(12)) {
        self.redis = redis
        self.subscriber = subscriber
        self.replyChannel = Keyspace.PubSub.deviceToolResults(instance: instance)
        self.timeout = timeout
    }

    var isListening: Bool { listening.load(ordering: .relaxed) }

    func run() async throws {
        await subscriber.holdSubscription(replyChannel, subscribed: { self.listening.store(true, ordering: .relaxed) })
        {
            [weak self] bytes in
            guard let result = try? JSONDecoder().decode(DeviceToolResult.self, from: Data(bytes)) else { return }
            self?.resolve(result)
        }
        listening.store(false, ordering: .relaxed)
    }

    /// The device's answer, or an error result (never throws: a failed call is an answer the agent
    /// speaks about).
    func call(_ toolbox: DeviceToolbox, name: String, arguments: JSONValue) async -> DeviceToolResult {
        AgentWorkerMetrics.deviceToolCalls.increment()
        let call = DeviceToolCall(
            callId: UUID().uuidString.lowercased(), sessionId: toolbox.sessionId, name: name, arguments: arguments,
            replyTo: replyChannel)
        // Registered before the call leaves, so an answer faster than this task is kept.
        waiters.withLock { $0[call.callId] = .waiting(nil) }
        let result = await withTaskGroup(of: Void.self) { group -> DeviceToolResult in
            group.addTask {
                do {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    let reached = try await self.redis.publishUntilHeard(
                        [Array(try encoder.encode(call))],
                        to: Keyspace.PubSub.deviceToolCalls(gateway: toolbox.gateway),
                        deadline: .now + RedisSubscriber.resubscribeWait)
                    // Nobody subscribed for a while: that gateway is gone, and the device with it.
                    if reached == 0 {
                        self.resolve(
                            DeviceToolResult(callId: call.callId, text: "the device is not connected", isError: true))
                        return
                    }
                } catch {
                    self.resolve(
                        DeviceToolResult(
                            callId: call.callId, text: "the call could not be sent: \(error)", isError: true))
                    return
                }
                try? await Task.sleep(for: self.timeout)
                self.resolve(DeviceToolResult(callId: call.callId, text: "the device did not answer", isError: true))
            }
            let result = await withCheckedContinuation { continuation in
                let arrived: DeviceToolResult? = waiters.withLock { waiters in
                    if case .arrived(let result) = waiters[call.callId] {
                        waiters[call.callId] = nil
                        return result
                    }
                    waiters[call.callId] = .waiting(continuation)
                    return nil
                }
                if let arrived { continuation.resume(returning: arrived) }
            }
            group.cancelAll()
            return result
        }
        if result.isError { AgentWorkerMetrics.deviceToolFailures.increment() }
        return result
    }

    /// The first outcome of a call wins; later ones (a timeout after the answer) are ignored.
    func resolve(_ result: DeviceToolResult) {
        let continuation: CheckedContinuation<DeviceToolResult, Never>? = waiters.withLock { waiters in
            switch waiters[result.callId] {
            case .waiting(let continuation?):
                waiters[result.callId] = nil
                return continuation
            case .waiting(nil):
                waiters[result.callId] = .arrived(result)
                return nil
            case .arrived, nil:
                return nil
            }
        }
        continuation?.resume(returning: result)
    }
}

/// The offline engine's deterministic rule for device tools, so the whole loop runs (and is tested)
/// without a model: an utterance that names a tool calls it. A tool is named when every word of the
/// last part of its name appears in the utterance (`self.light.turn_on`: "turn" and "on"); among those,
/// the one with the most words of its name heard wins ("light" too), then the first listed. Arguments are filled from the utterance by the schema's property types: a
/// boolean is false when the utterance says "off", "false" or "no", else true; an integer or a
/// number is the first number in the utterance (clamped to `minimum`/`maximum`); strings are left out.
public enum DeviceToolRule {
    public struct Choice: Sendable, Equatable {
        public var tool: DeviceTool
        public var arguments: JSONValue
    }

    public static func choose(for utterance: String, among tools: [DeviceTool]) -> Choice? {
        let heard = words(utterance)
        var best: (tool: DeviceTool, score: Int)?
        for tool in tools {
            let (required, context) = nameWords(tool.name)
            guard !required.isEmpty, required.allSatisfy(heard.contains) else { continue }
            let score = required.count + context.filter(heard.contains).count
            if best == nil || score > best!.score { best = (tool, score) }
        }
        guard let tool = best?.tool else { return nil }
        return Choice(tool: tool, arguments: arguments(for: tool, utterance: utterance, heard: heard))
    }

    /// "self.light.turn_on" → (["turn", "on"], ["light"]): the words that must be heard, and the
    /// words of the rest of the name (without `self`) that count when heard.
    static func nameWords(_ name: String) -> (required: [String], context: [String]) {
        var parts = name.lowercased().split(separator: ".").map(String.init)
        if parts.first == "self", parts.count > 1 { parts.removeFirst() }
        guard let last = parts.popLast() else { return ([], []) }
        return (words(last), parts.flatMap { words($0) })
    }

    static func words(_ text: String) -> [String] {
        text.lowercased().split { !$0.isLetter && !$0.isNumber }.map(String.init)
    }

    static func arguments(for tool: DeviceTool, utterance: String, heard: [String]) -> JSONValue {
        guard let properties = tool.inputSchema["properties"]?.objectValue else { return .object([:]) }
        let number = heard.lazy.compactMap { Double($0) }.first
        var arguments: [String: JSONValue] = [:]
        for (name, schema) in properties.sorted(by: { $0.key < $1.key }) {
            switch schema["type"]?.stringValue {
            case "boolean":
                arguments[name] = .bool(!heard.contains { ["off", "false", "no"].contains($0) })
            case "integer", "number":
                guard var value = number else { continue }
                if let minimum = schema["minimum"]?.doubleValue { value = max(value, minimum) }
                if let maximum = schema["maximum"]?.doubleValue { value = min(value, maximum) }
                arguments[name] = .number(schema["type"]?.stringValue == "integer" ? value.rounded() : value)
            default:
                continue
            }
        }
        return .object(arguments)
    }

    /// What the offline engine says after the call.
    public static func answer(tool: String, result: DeviceToolResult) -> String {
        let said = result.text.trimmingCharacters(in: .whitespacesAndNewlines)
        if result.isError {
            return "I tried \(tool) on your device, but it failed: \(said.isEmpty ? "no reason given" : said)."
        }
        return "Done. I called \(tool) on your device and it answered: \(said.isEmpty ? "nothing" : said)."
    }
}

/// A role's provider with a device's tools: the call goes out, its result comes back, and the answer
/// continues from it, under the same message. The offline engine decides by `DeviceToolRule`; another
/// provider gets the tools as functions (OpenAI's `tools`) and decides itself, for a few rounds.
struct DeviceToolProvider: ChatProvider {
    let base: any ChatProvider
    let offline: OfflineProvider
    let toolbox: DeviceToolbox
    let caller: any DeviceToolCalling

    /// Rounds of tool calls in one answer; the request after the last says `tool_choice: none`, so a
    /// model that keeps calling cannot hold the device's turn forever.
    static let maxToolRounds = 3
    /// Calls answered in one round, as many as may wait for one device; the rest are answered with an
    /// error the model reads.
    static let maxCallsPerRound = DeviceToolCall.maxWaiting

    var kind: ProviderKind { base.kind }

    /// `base` itself when there are no tools.
    static func wrap(
        _ base: any ChatProvider, toolbox: DeviceToolbox?, caller: any DeviceToolCalling, offline: OfflineProvider
    ) -> any ChatProvider {
        guard let toolbox, !toolbox.tools.isEmpty else { return base }
        return DeviceToolProvider(base: base, offline: offline, toolbox: toolbox, caller: caller)
    }

    @discardableResult
    func stream(_ request: ProviderRequest, onDelta: (String) async throws -> Void) async throws -> [ToolCall] {
        if base.kind == .offline {
            guard let choice = DeviceToolRule.choose(for: request.userMessage, among: toolbox.tools) else {
                return try await base.stream(request, onDelta: onDelta)
            }
            let result = await caller.call(toolbox, name: choice.tool.name, arguments: choice.arguments)
            try await offline.engine.stream(
                text: DeviceToolRule.answer(tool: choice.tool.name, result: result), onToken: onDelta)
            return []
        }
        // An answer resumed after a crash goes on in text: its tool calls (if any) were made, and the
        // journal does not say which, so none is made again.
        guard request.answerSoFar.isEmpty else { return try await base.stream(request, onDelta: onDelta) }
        var request = request
        request.tools = toolbox.tools
        let names = ToolNames(toolbox.tools)
        while true {
            request.mayCallTools = request.toolRounds.count < Self.maxToolRounds
            var text = ""
            let calls = try await base.stream(request) { delta in
                text += delta
                try await onDelta(delta)
            }
            guard !calls.isEmpty else { return [] }
            guard request.mayCallTools else {
                throw ProviderError(
                    .malformed, "the model still called tools after \(Self.maxToolRounds) rounds and tool_choice none")
            }
            var results: [String: String] = [:]
            for call in calls.prefix(Self.maxCallsPerRound) { results[call.id] = await result(of: call, names: names) }
            for call in calls.dropFirst(Self.maxCallsPerRound) {
                results[call.id] = "error: too many calls in one round; at most \(Self.maxCallsPerRound)"
            }
            request.toolRounds.append(ToolRound(text: text, calls: calls, results: results))
        }
    }

    /// What the model reads back: the device's text, or `error: ` and why (the model may say so).
    func result(of call: ToolCall, names: ToolNames) async -> String {
        guard let name = names.deviceName(for: call.name) else { return "error: the device has no tool \(call.name)" }
        let arguments: JSONValue
        if call.arguments.allSatisfy(\.isWhitespace) {
            arguments = .object([:])
        } else if let parsed = try? JSONDecoder().decode(JSONValue.self, from: Data(call.arguments.utf8)),
            case .object = parsed
        {
            arguments = parsed
        } else {
            return "error: the arguments are not a JSON object: \(call.arguments.prefix(200))"
        }
        let result = await caller.call(toolbox, name: name, arguments: arguments)
        return result.isError ? "error: \(result.text)" : result.text
    }

    func estimatedLength(of request: ProviderRequest) -> Int? {
        // The answer depends on the device's result.
        DeviceToolRule.choose(for: request.userMessage, among: toolbox.tools) == nil
            ? base.estimatedLength(of: request) : nil
    }
}
