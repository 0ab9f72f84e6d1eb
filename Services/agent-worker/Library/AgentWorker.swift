import ArgumentParser
import Foundation
import Logging
import Metrics
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime

/// Consumes agent tasks and streams each reply to its conversation as MESSAGE_STREAM_START, CHUNK… END.
public enum AgentWorker {
    public struct Options: ParsableArguments {
        @Option(help: "Offline engine tokens per second, 0 for instant (env SWITCHBOARD_AGENT_TOKEN_RATE; default 40).")
        public var tokenRate: Double?
        @Option(help: "Offline engine delay before the first token in ms (env SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS; default 150).")
        public var firstTokenDelayMs: Int?

        public init() {}

        public func engineSettings() throws -> OfflineEngine.Settings {
            OfflineEngine.Settings(
                tokensPerSecond: try setting(tokenRate, environment: "AGENT_TOKEN_RATE", default: 40),
                firstTokenDelay: .milliseconds(try setting(firstTokenDelayMs, environment: "AGENT_FIRST_TOKEN_DELAY_MS", default: 150)))
        }
    }

    public static func run(configuration: SwitchboardConfiguration, engine: OfflineEngine) async throws {
        let context = try await ServiceRunner.makeContext(configuration: configuration)
        let consumer = try context.makeConsumer(group: ConsumerGroups.agentWorker, topics: [Topics.agentTasks])
        let processor = KafkaEventProcessor(
            consumer: consumer, deadLetterProducer: context.producer, logger: context.logger
        ) { message in
            let envelope = try EnvelopeCodec.decode(AgentTaskRequested.self, from: message.value)
            try await StreamingTask(context: context, engine: engine, envelope: envelope).run()
        }
        context.logger.info(
            "offline engine", metadata: ["engine.tokens_per_second": "\(engine.settings.tokensPerSecond)"])
        try await ServiceRunner.run(context: context, services: [processor])
    }
}

/// One task's reply: the start, the chunks in order, the end. Chunks are enqueued without waiting for
/// each acknowledgement (order is kept per key by the idempotent producer); the end waits for all.
struct StreamingTask {
    let context: ServiceContext
    let engine: OfflineEngine
    let envelope: Envelope<AgentTaskRequested>

    func run() async throws {
        let task = envelope.payload
        let started = ContinuousClock.now
        var pending: [DeliveryFuture] = []
        pending.append(
            try await emit(
                FrameType.messageStreamStart,
                ["messageId": .string(task.replyMessageId), "conversationId": .string(task.conversationId),
                 "role": .string(task.role), "inReplyTo": .string(task.inReplyTo)]))
        var content = ""
        var position = 0
        try await engine.generate(prompt: task.prompt, role: task.role) { token in
            content += token
            pending.append(
                try await emit(
                    FrameType.messageStreamChunk,
                    ["messageId": .string(task.replyMessageId), "conversationId": .string(task.conversationId),
                     "chunk": .string(token), "position": .number(Double(position)), "role": .string(task.role)]))
            position += 1
        }
        let duration = ContinuousClock.now - started
        let milliseconds = Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
        pending.append(
            try await emit(
                FrameType.messageStreamEnd,
                ["messageId": .string(task.replyMessageId),
                 "finalMessage": [
                    "id": .string(task.replyMessageId), "conversationId": .string(task.conversationId),
                    "role": .string(task.role), "content": .string(content), "createdAt": .number(Double(Clock.epochMilliseconds())),
                 ],
                 "metadata": ["chunks": .number(Double(position)), "durationMs": .number(milliseconds.rounded()),
                              "engine": "offline"]]))
        for future in pending { _ = try await future.report() }
        Counter(label: "sb_agent_tasks_completed_total").increment()
    }

    private func emit(_ frameType: String, _ data: JSONValue) async throws -> DeliveryFuture {
        let event = ClientEvent(channel: .conversation(envelope.payload.conversationId), frameType: frameType, data: data)
        let outgoing = context.envelope(event, routingKey: envelope.payload.conversationId, traceparent: envelope.traceparent)
        return try await context.producer.enqueue(EventBus.message(outgoing, topic: Topics.clientEvents))
    }
}
