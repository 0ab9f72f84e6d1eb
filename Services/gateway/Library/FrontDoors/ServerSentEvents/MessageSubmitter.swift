import CompressNIO
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOCore
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime

/// Accepts a user message from any front door (WebSocket, REST) and puts it on the bus.
struct MessageSubmitter: Sendable {
    let context: ServiceContext

    /// Returns the message id once Kafka has the message.
    /// `pattern` is the collaboration pattern the user asked for; the orchestrator validates it.
    /// `messageID` lets a front door know the run's id (the message's) before it subscribes.
    func submit(
        userID: String, conversationID: String, content: String, clientMessageID: String, pattern: String? = nil,
        busyPolicy: String? = nil, leadRole: String? = nil, messageID: String = UUID().uuidString.lowercased()
    ) async throws -> String {
        let payload = ChatMessageSubmitted(
            messageId: messageID, clientMessageId: clientMessageID, conversationId: conversationID, userId: userID,
            content: content, gateway: context.configuration.instanceID, pattern: pattern.map { String($0.prefix(32)) },
            busyPolicy: busyPolicy.map { String($0.prefix(32)) }, leadRole: leadRole)
        try await context.publish(context.envelope(payload, routingKey: conversationID), to: Topics.chatRequests)
        return messageID
    }

    /// Asks the orchestrator to stop the conversation's run; returns once Kafka has the request.
    func interrupt(userID: String, conversationID: String, requestID: String) async throws {
        let payload = ChatInterruptRequested(
            conversationId: conversationID, userId: userID, requestId: requestID,
            gateway: context.configuration.instanceID)
        try await context.publish(context.envelope(payload, routingKey: conversationID), to: Topics.chatRequests)
    }
}
