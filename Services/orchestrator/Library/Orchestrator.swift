import Foundation
import Logging
import Metrics
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime

/// Turns each accepted user message into work for the AI roles.
public enum Orchestrator {
    /// The role that answers when no team configuration chooses another.
    public static let defaultRole = "Alex"

    public static func run(configuration: SwitchboardConfiguration) async throws {
        let context = try await ServiceRunner.makeContext(configuration: configuration)
        let consumer = try context.makeConsumer(group: ConsumerGroups.orchestrator, topics: [Topics.chatRequests])
        let processor = KafkaEventProcessor(
            consumer: consumer, deadLetterProducer: context.producer, logger: context.logger
        ) { message in
            let envelope = try EnvelopeCodec.decode(ChatMessageSubmitted.self, from: message.value)
            let task = plan(for: envelope.payload, taskID: envelope.id)
            try await context.publish(
                context.envelope(task, routingKey: task.conversationId, traceparent: envelope.traceparent),
                to: Topics.agentTasks)
            Counter(label: "sb_orchestrator_tasks_total", dimensions: [("role", task.role)]).increment()
        }
        try await ServiceRunner.run(context: context, services: [processor])
    }

    /// The task for a message. Its ids derive from the message's event id, so a redelivered message
    /// produces the same task and the same reply id (downstream de-duplicates by them).
    public static func plan(for message: ChatMessageSubmitted, taskID: UUID) -> AgentTaskRequested {
        AgentTaskRequested(
            taskId: taskID.uuidString.lowercased(), conversationId: message.conversationId, userId: message.userId,
            replyMessageId: "reply-\(message.messageId)", inReplyTo: message.messageId, role: defaultRole,
            prompt: message.content)
    }
}
