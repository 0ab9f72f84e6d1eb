import Foundation
import SwitchboardContracts
import SwitchboardTestSupport
import Testing

@testable import AgentWorker
@testable import Gateway
@testable import Orchestrator
@testable import SwitchboardCLI
@testable import SwitchboardKafka

@Suite struct OfflineEngineTests {
    @Test(arguments: ["hello world", "你好，世界！这是一个测试", "family 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵 ok", "  leading and trailing  ", ""])
    func tokensJoinBackToTheReplyWithoutSplittingGraphemes(_ prompt: String) {
        let engine = OfflineEngine()
        let tokens = engine.reply(to: prompt, role: "Alex")
        let text = OfflineEngine.compose(prompt: prompt, role: "Alex")
        #expect(tokens.joined() == text)
        #expect(tokens.allSatisfy { !$0.isEmpty })
        // Every token is a whole number of grapheme clusters of the reply.
        var rebuilt: [Character] = []
        for token in tokens { rebuilt.append(contentsOf: Array(token)) }
        #expect(rebuilt == Array(text))
    }

    @Test func repliesMentionThePromptAndSayWhatTheyAre() {
        let text = OfflineEngine.compose(prompt: "plan a launch for Switchboard", role: "Kulu")
        #expect(text.hasPrefix("Kulu here."))
        #expect(text.contains("plan a launch for Switchboard"))
        #expect(text.contains("offline engine"))
    }

    @Test func instantEngineStreamsEveryToken() async throws {
        let engine = OfflineEngine(settings: .init(tokensPerSecond: 0, firstTokenDelay: .zero))
        var tokens: [String] = []
        try await engine.generate(prompt: "a b c", role: "Alex") { tokens.append($0) }
        #expect(tokens == engine.reply(to: "a b c", role: "Alex"))
    }

    @Test func pacedEngineStopsWhenCancelled() async {
        let engine = OfflineEngine(settings: .init(tokensPerSecond: 5, firstTokenDelay: .zero))
        let task = Task {
            var count = 0
            try await engine.generate(prompt: "one two three four five six seven eight", role: "Alex") { _ in count += 1
            }
            return count
        }
        try? await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let result = await task.result
        #expect(throws: CancellationError.self) { try result.get() }
    }
}

@Suite struct GatewayValidationTests {
    @Test(arguments: ["c1", "conv-2024_a.b", String(repeating: "x", count: 128)])
    func acceptsReasonableIDs(_ id: String) {
        #expect(CommandHandler.isValidID(id))
    }

    @Test(arguments: ["", "has space", "slash/x", "quote\"", String(repeating: "x", count: 129), "emoji😀"])
    func refusesOthers(_ id: String) {
        #expect(!CommandHandler.isValidID(id))
    }

    @Test func unknownTypesShareOneMetricLabel() {
        #expect(CommandHandler.metricType("SEND_MESSAGE") == "SEND_MESSAGE")
        #expect(CommandHandler.metricType("random-\(UUID())") == "other")
    }
}

@Suite struct PartitionBufferTests {
    func message(_ offset: Int64) -> KafkaConsumerMessage {
        KafkaConsumerMessage(
            topic: "t", partition: 0, offset: offset, key: nil, value: [], headers: [], timestampMilliseconds: nil)
    }

    /// The polling thread's view: after each step it takes the buffer's decision and records it.
    final class PollingThread {
        let buffer: PartitionBuffer
        var calls: [String] = []
        init(_ buffer: PartitionBuffer) { self.buffer = buffer }
        func poll() -> [String] {
            if let action = buffer.takeFlowAction() { calls.append(action.description) }
            return calls
        }
    }

    @Test func pausesAtTheHighWatermarkAndResumesAtHalf() async {
        let buffer = PartitionBuffer(partition: TopicPartition(topic: "t", partition: 0), highWatermark: 4)
        let control = PollingThread(buffer)
        buffer.push([message(0), message(1)])
        #expect(control.poll().isEmpty)
        buffer.push([message(2), message(3)])
        #expect(control.poll() == ["pause"])
        buffer.push([message(4)])  // already paused: no second pause
        for expected in Int64(0)...4 {
            #expect(await buffer.next()?.offset == expected)
            // 5 buffered; after taking offsets 0, 1 and 2, two are left: half of 4.
            #expect(control.poll() == (expected >= 2 ? ["pause", "resume"] : ["pause"]))
        }
        // Fill again: a second pause follows the resume, in that order.
        buffer.push((5..<10).map { message($0) }[...])
        #expect(control.poll() == ["pause", "resume", "pause"])
        // A resume undone before the polling thread came to it reaches no one.
        for _ in 0..<3 { _ = await buffer.next() }
        buffer.push((10..<13).map { message($0) }[...])
        #expect(control.poll() == ["pause", "resume", "pause"])
    }

    @Test func aWaitingReaderGetsThePushAndFinishEndsIt() async {
        let buffer = PartitionBuffer(partition: TopicPartition(topic: "t", partition: 0), highWatermark: 10)
        async let first = buffer.next()
        try? await Task.sleep(for: .milliseconds(50))
        buffer.push([message(7)])
        #expect(await first?.offset == 7)
        async let second = buffer.next()
        try? await Task.sleep(for: .milliseconds(50))
        buffer.finish()
        #expect(await second == nil)
        buffer.push([message(8)])
        #expect(await buffer.next() == nil)
    }
}

@Suite struct TailFormatterTests {
    func message(type: String, key: String) throws -> KafkaConsumerMessage {
        let envelope = Envelope(
            routingKey: key, source: EventSource(service: "gateway", instance: "g1"),
            payload: ClientEvent(channel: .conversation(key), frameType: type, data: ["x": 1]))
        return KafkaConsumerMessage(
            topic: "sb.client.events", partition: 0, offset: 1, key: Array(key.utf8),
            value: try EnvelopeCodec.encode(envelope),
            headers: [KafkaHeader(name: BusHeaders.type, string: envelope.type)], timestampMilliseconds: nil)
    }

    @Test func filtersByKeyAndType() throws {
        let formatter = TailFormatter(key: "c1", type: "client.event", json: false)
        let line = try #require(formatter.line(for: message(type: "MESSAGE_STREAM_CHUNK", key: "c1")))
        #expect(line.contains("client.event") && line.contains("key=c1") && line.contains("from=gateway/g1"))
        #expect(formatter.line(for: try message(type: "X", key: "c2")) == nil)
        #expect(
            TailFormatter(key: nil, type: "chat.message.submitted", json: false).line(
                for: try message(type: "X", key: "c1")) == nil)
    }

    @Test func jsonModePrintsTheEnvelope() throws {
        let raw = try message(type: "X", key: "c1")
        #expect(
            TailFormatter(key: nil, type: nil, json: true).line(for: raw) == String(decoding: raw.value, as: UTF8.self))
    }
}
