import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime

/// Joins the workflow-runner consumer group on `Topics.workflowCommands`. This version handles no event type yet:
/// whatever arrives is dead-lettered with the reason, so nothing is lost before the pipeline lands.
public enum WorkflowRunner {
    public static func run(configuration: SwitchboardConfiguration) async throws {
        let context = try await ServiceRunner.makeContext(configuration: configuration)
        let consumer = try context.makeConsumer(group: ConsumerGroups.workflowRunner, topics: [Topics.workflowCommands])
        let processor = KafkaEventProcessor(
            consumer: consumer, deadLetterProducer: context.producer, logger: context.logger
        ) { message in
            let header = try EnvelopeCodec.header(from: message.value)
            throw UnhandledEventError(type: header.type, service: configuration.service.rawValue)
        }
        try await ServiceRunner.run(context: context, services: [processor])
    }
}
