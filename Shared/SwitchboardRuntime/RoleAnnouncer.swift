import SwitchboardContracts

/// The client frames that announce a role's applied steps, from whichever service moved it (beside
/// `RoleStateStore`, which moves it). Every step is a ROLE_STATUS_CHANGE. The orchestrator, which sends
/// a role to THINKING, announces the thinking's start with the time it expects; the agent-worker, which
/// takes the role out of THINKING, announces its end with the time it took.
public struct RoleAnnouncer: Sendable {
    public enum Thinking: Sendable {
        /// Entering THINKING is announced, with the expected time (ms).
        case start(estimatedMs: Int64)
        /// Leaving THINKING is announced, with the time it took (ms).
        case end(actualMs: Int64)
    }

    public let conversation: String
    public let role: String

    public init(conversation: String, role: String) {
        self.conversation = conversation
        self.role = role
    }

    /// Every frame goes to the conversation's channel, then to its role-activity channel.
    public var channels: [Channel] { [.conversation(conversation), .roles(conversation)] }

    /// The frames of one step, in the order clients see them.
    public func frames(for step: RoleStateStore.Step, reason: String, thinking: Thinking) -> [any FramePayload] {
        let change = RoleStatusChange(
            conversationId: conversation, role: role, status: step.to.rawValue, previousStatus: step.from.rawValue,
            reason: reason)
        switch thinking {
        case .start(let estimatedMs) where step.to == .thinking:
            return [change, RoleThinkingStart(conversationId: conversation, role: role, estimatedTime: estimatedMs)]
        case .end(let actualMs) where step.from == .thinking:
            return [RoleThinkingEnd(conversationId: conversation, role: role, actualTime: actualMs), change]
        default:
            return [change]
        }
    }
}
