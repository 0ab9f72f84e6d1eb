import Foundation
import SwitchboardContracts

/// One message's collaboration.
public struct CollaborationRun: Codable, Sendable, Equatable {
    public var runId: String
    public var message: ChatMessageSubmitted
    public var traceparent: String
    public var pattern: CollaborationPattern
    public var reason: String
    /// Stages of roles; the roles of a stage work concurrently. The dynamic pattern appends stages.
    public var plan: [[String]]
    public var stage: Int
    public var contributions: [String: RoleContribution] = [:]
    /// Chunks of a role's answer the client saw (the final role's partial reply is kept).
    public var streamedChunks: [String: Int] = [:]
    public var dispatchedAt: [String: Int64] = [:]
    public var history: [ConversationTurn]
    public var startedAt: Int64
    public var progress: Int = 0
    /// Set once the user asked to stop: the roles still working are told to stop, no new stage starts.
    public var stopping: Bool? = nil
    /// The role that leads this run: it writes the reply (see `CollaborationPlanner.led(by:)`).
    public var lead: String? = nil

    public var roles: [String] { plan.flatMap { $0 } }
    public var finalRole: String { plan.last?.last ?? "" }
}
