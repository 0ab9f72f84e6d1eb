import Foundation

// The orchestrator's client frames of a collaboration run, in the order a run sends them. Each encodes
// to the field names and JSON types the frames had when they were built by hand; an optional field
// left nil is not sent.

/// MESSAGE_REJECTED: a message not answered, and why (`duplicate`, `busy`, `queue_full`; docs/protocol.md).
public struct MessageRejected: FramePayload, Equatable {
    public static let frameType = FrameType.messageRejected
    public var conversationId: String
    public var messageId: String
    public var clientMessageId: String
    public var reason: String
    /// `duplicate`: the first message sent with the same client message id.
    public var duplicateOf: String?
    /// `busy` and `queue_full`: the run in progress.
    public var runId: String?
    /// `queue_full`: how many messages may wait.
    public var limit: Int?

    public init(
        conversationId: String, messageId: String, clientMessageId: String, reason: String,
        duplicateOf: String? = nil, runId: String? = nil, limit: Int? = nil
    ) {
        self.conversationId = conversationId
        self.messageId = messageId
        self.clientMessageId = clientMessageId
        self.reason = reason
        self.duplicateOf = duplicateOf
        self.runId = runId
        self.limit = limit
    }
}

/// COLLABORATION_START: the run's plan as the client is told it.
public struct CollaborationStart: FramePayload, Equatable {
    public static let frameType = FrameType.collaborationStart
    public var conversationId: String
    public var runId: String
    public var messageId: String
    /// Every participant, in the order they work.
    public var roles: [String]
    public var pattern: CollaborationPattern
    /// Why the planner chose the pattern.
    public var reason: String
    /// Milliseconds.
    public var estimatedDuration: Int
    /// The role asked to lead this run, if any.
    public var lead: String?

    public init(
        conversationId: String, runId: String, messageId: String, roles: [String], pattern: CollaborationPattern,
        reason: String, estimatedDuration: Int, lead: String? = nil
    ) {
        self.conversationId = conversationId
        self.runId = runId
        self.messageId = messageId
        self.roles = roles
        self.pattern = pattern
        self.reason = reason
        self.estimatedDuration = estimatedDuration
        self.lead = lead
    }
}

/// COLLABORATION_INITIATED: seed 000's `{pattern, participants, estimatedDuration}`, plus the ids.
public struct CollaborationInitiated: FramePayload, Equatable {
    public static let frameType = FrameType.collaborationInitiated
    public var conversationId: String
    public var runId: String
    public var pattern: CollaborationPattern
    public var participants: [String]
    /// Milliseconds.
    public var estimatedDuration: Int

    public init(
        conversationId: String, runId: String, pattern: CollaborationPattern, participants: [String],
        estimatedDuration: Int
    ) {
        self.conversationId = conversationId
        self.runId = runId
        self.pattern = pattern
        self.participants = participants
        self.estimatedDuration = estimatedDuration
    }
}

/// ROLE_ASSIGNED: a role's task in the run, and the roles whose results it waits for.
public struct RoleAssigned: FramePayload, Equatable {
    public static let frameType = FrameType.roleAssigned

    public struct Task: Codable, Sendable, Equatable {
        public var id: String
        /// The role's responsibility.
        public var description: String

        public init(id: String, description: String) {
            self.id = id
            self.description = description
        }
    }

    public var conversationId: String
    public var runId: String
    public var role: String
    public var task: Task
    /// The role's stage, from 1.
    public var priority: Int
    /// The roles of the stages before it.
    public var dependencies: [String]

    public init(conversationId: String, runId: String, role: String, task: Task, priority: Int, dependencies: [String])
    {
        self.conversationId = conversationId
        self.runId = runId
        self.role = role
        self.task = task
        self.priority = priority
        self.dependencies = dependencies
    }
}

/// COLLABORATION_PROGRESS: 0–100, never going back; the roles done, working and still to come.
public struct CollaborationProgress: FramePayload, Equatable {
    public static let frameType = FrameType.collaborationProgress
    public var conversationId: String
    public var runId: String
    public var progress: Int
    /// The same as `progress` (seed 000's name).
    public var overallProgress: Int
    /// `preprocessing`, `ai_processing`, `postprocessing` or `complete`.
    public var currentStage: String
    public var completedTasks: [String]
    public var activeTasks: [String]
    public var pendingTasks: [String]
    public var activeRole: String?

    public init(
        conversationId: String, runId: String, progress: Int, currentStage: String, completedTasks: [String],
        activeTasks: [String], pendingTasks: [String], activeRole: String? = nil
    ) {
        self.conversationId = conversationId
        self.runId = runId
        self.progress = progress
        self.overallProgress = progress
        self.currentStage = currentStage
        self.completedTasks = completedTasks
        self.activeTasks = activeTasks
        self.pendingTasks = pendingTasks
        self.activeRole = activeRole
    }
}

/// COLLABORATION_COMPLETE: the run's outcome and what each role contributed.
public struct CollaborationComplete: FramePayload, Equatable {
    public static let frameType = FrameType.collaborationComplete
    public var conversationId: String
    public var runId: String
    public var messageId: String
    public var pattern: CollaborationPattern
    public var result: CollaborationCompleted.Result
    public var contributions: [RoleContribution]
    /// Milliseconds.
    public var duration: Int

    public init(
        conversationId: String, runId: String, messageId: String, pattern: CollaborationPattern,
        result: CollaborationCompleted.Result, contributions: [RoleContribution], duration: Int
    ) {
        self.conversationId = conversationId
        self.runId = runId
        self.messageId = messageId
        self.pattern = pattern
        self.result = result
        self.contributions = contributions
        self.duration = duration
    }
}

/// COLLABORATION_COMPLETED: seed 000's `{result, participantContributions, quality, duration}`.
public struct CollaborationCompleted: FramePayload, Equatable {
    public static let frameType = FrameType.collaborationCompleted

    /// The run's outcome, the same object as COLLABORATION_COMPLETE's `result`.
    public struct Result: Codable, Sendable, Equatable {
        public var status: String
        public var answer: String
        public var answeredBy: String
        public var failedRoles: [String]
        public var note: String

        public init(status: String, answer: String, answeredBy: String, failedRoles: [String], note: String) {
            self.status = status
            self.answer = answer
            self.answeredBy = answeredBy
            self.failedRoles = failedRoles
            self.note = note
        }
    }

    /// The seed leaves QualityMetrics open: what the platform can measure of a run.
    public struct Quality: Codable, Sendable, Equatable {
        /// Roles that completed over roles planned, 0…1.
        public var completionRate: Double
        public var completedRoles: Int
        public var failedRoles: Int
        /// True when the final role wrote the answer (no fallback).
        public var answeredByFinalRole: Bool

        public init(completionRate: Double, completedRoles: Int, failedRoles: Int, answeredByFinalRole: Bool) {
            self.completionRate = completionRate
            self.completedRoles = completedRoles
            self.failedRoles = failedRoles
            self.answeredByFinalRole = answeredByFinalRole
        }
    }

    public var conversationId: String
    public var runId: String
    public var result: Result
    public var participantContributions: [RoleContribution]
    public var quality: Quality
    /// Milliseconds.
    public var duration: Int

    public init(
        conversationId: String, runId: String, result: Result, participantContributions: [RoleContribution],
        quality: Quality, duration: Int
    ) {
        self.conversationId = conversationId
        self.runId = runId
        self.result = result
        self.participantContributions = participantContributions
        self.quality = quality
        self.duration = duration
    }
}

/// The reply the orchestrator writes itself when the final role sent nothing of its own (it failed, or
/// the run was stopped first): a `MessageStreamStart`, one chunk holding the whole text, a
/// `MessageStreamEnd`. Its chunk is smaller than an agent-worker's: no timings, no seed 001 fields. Its
/// fields are those every MESSAGE_STREAM_CHUNK carries, so a reader that needs only the text decodes any
/// chunk as this.
public struct FallbackReplyChunk: FramePayload, Equatable {
    public static let frameType = FrameType.messageStreamChunk
    public var messageId: String
    public var conversationId: String
    public var chunk: String
    /// The whole reply: 0.
    public var position: Int
    public var role: String

    public init(messageId: String, conversationId: String, chunk: String, position: Int = 0, role: String) {
        self.messageId = messageId
        self.conversationId = conversationId
        self.chunk = chunk
        self.position = position
        self.role = role
    }
}
