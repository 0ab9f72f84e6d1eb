import Foundation

// The frames of one role's answer, as the agent-worker sends them: the reply stream (MESSAGE_STREAM_*),
// the role's activity in seed 001's agent events (agent_start, AGENT_CHUNK, agent_complete, error) and a
// workflow llm node's progress. Field names and JSON types are those the frames had when built by hand.

/// Which reply a frame belongs to; every agent activity frame carries these beside its event.
public struct ReplyIDs: Codable, Sendable, Equatable {
    public var messageId: String
    public var conversationId: String
    public var role: String
    /// The collaboration run, "" for a task outside one.
    public var runId: String

    public init(messageId: String, conversationId: String, role: String, runId: String) {
        self.messageId = messageId
        self.conversationId = conversationId
        self.role = role
        self.runId = runId
    }
}

/// Seed 001's agent event fields: `{event_type, agent_source, timestamp, payload}`.
public struct AgentEventFields<Payload: Codable & Sendable & Equatable>: Codable, Sendable, Equatable {
    public var eventType: String
    public var agentSource: String
    /// ISO 8601 with fractional seconds (`AgentEvent.isoTimestamp`).
    public var timestamp: String
    public var payload: Payload

    public init(type: String, source: String, payload: Payload, at date: Date = Date()) {
        self.eventType = type
        self.agentSource = source
        self.timestamp = AgentEvent.isoTimestamp(date)
        self.payload = payload
    }

    enum CodingKeys: String, CodingKey {
        case eventType = "event_type", agentSource = "agent_source", timestamp, payload
    }
}

/// The payload of an agent activity frame, with the frame type and seed event type it travels as.
public protocol AgentActivityPayload: Codable, Sendable, Equatable {
    static var frameType: String { get }
    static var eventType: String { get }
}

/// agent_start, agent_complete or error (`AgentActivityPayload` says which): the reply's ids and the
/// seed's event fields, side by side in one object.
public struct AgentActivity<Payload: AgentActivityPayload>: FramePayload, Equatable {
    public static var frameType: String { Payload.frameType }
    public var ids: ReplyIDs
    public var event: AgentEventFields<Payload>

    public init(ids: ReplyIDs, payload: Payload, at date: Date = Date()) {
        self.ids = ids
        self.event = AgentEventFields(type: Payload.eventType, source: ids.role, payload: payload, at: date)
    }

    public init(from decoder: any Decoder) throws {
        ids = try ReplyIDs(from: decoder)
        event = try AgentEventFields(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        try ids.encode(to: encoder)
        try event.encode(to: encoder)
    }
}

/// agent_start's payload.
public struct AgentStartPayload: AgentActivityPayload {
    public static let frameType = FrameType.agentStart
    public static let eventType = AgentEvent.agentStart
    /// Always "started".
    public var status: String
    public var taskDescription: String

    public init(status: String = "started", taskDescription: String) {
        self.status = status
        self.taskDescription = taskDescription
    }

    enum CodingKeys: String, CodingKey {
        case status, taskDescription = "task_description"
    }
}

/// agent_complete's payload: a completed or stopped answer.
public struct AgentCompletePayload: AgentActivityPayload {
    public static let frameType = FrameType.agentComplete
    public static let eventType = AgentEvent.agentComplete
    /// "completed" or "stopped".
    public var status: String
    /// The answer's first 120 characters.
    public var summary: String
    public var chunks: Int
    public var durationMs: Int

    public init(status: String, summary: String, chunks: Int, durationMs: Int) {
        self.status = status
        self.summary = summary
        self.chunks = chunks
        self.durationMs = durationMs
    }
}

extension AgentEvent.ErrorPayload: AgentActivityPayload {
    public static let frameType = FrameType.agentError
    public static let eventType = AgentEvent.error
}

public typealias AgentStart = AgentActivity<AgentStartPayload>
public typealias AgentComplete = AgentActivity<AgentCompletePayload>
public typealias AgentError = AgentActivity<AgentEvent.ErrorPayload>

/// The stream a role's chunks belong to: the reply the user sees, or a contribution to a collaboration.
public protocol ChunkStream: Sendable {
    static var frameType: String { get }
}

/// The final role's answer: MESSAGE_STREAM_CHUNK.
public enum ReplyStream: ChunkStream {
    public static let frameType = FrameType.messageStreamChunk
}

/// An intermediate role's contribution: AGENT_CHUNK.
public enum ContributionStream: ChunkStream {
    public static let frameType = FrameType.agentChunk
}

/// llm_chunk's payload (seed 001).
public struct LLMChunkPayload: Codable, Sendable, Equatable {
    public var content: String
    /// Always "text".
    public var contentType: String
    /// The agent's last chunk of a complete answer.
    public var isComplete: Bool

    public init(content: String, contentType: String = "text", isComplete: Bool) {
        self.content = content
        self.contentType = contentType
        self.isComplete = isComplete
    }

    enum CodingKeys: String, CodingKey {
        case content, contentType = "content_type", isComplete = "is_complete"
    }
}

/// One chunk of a role's answer: the reply's ids, the chunk and its place, and the seed's llm_chunk event.
public struct ReplyChunk<Stream: ChunkStream>: FramePayload, Equatable {
    public static var frameType: String { Stream.frameType }

    struct Place: Codable, Equatable {
        var chunk: String
        /// The characters sent before this chunk (seed 000: a character offset).
        var position: Int
        /// When the engine produced its first token (µs since the epoch), on the first chunk only.
        var firstTokenAt: Int64?
    }

    public var ids: ReplyIDs
    var place: Place
    public var event: AgentEventFields<LLMChunkPayload>

    public var chunk: String { place.chunk }
    public var position: Int { place.position }
    public var firstTokenAt: Int64? { place.firstTokenAt }

    public init(
        ids: ReplyIDs, chunk: String, position: Int, isComplete: Bool, firstTokenAt: Int64? = nil,
        at date: Date = Date()
    ) {
        self.ids = ids
        self.place = Place(chunk: chunk, position: position, firstTokenAt: firstTokenAt)
        self.event = AgentEventFields(
            type: AgentEvent.llmChunk, source: ids.role,
            payload: LLMChunkPayload(content: chunk, isComplete: isComplete),
            at: date)
    }

    public init(from decoder: any Decoder) throws {
        ids = try ReplyIDs(from: decoder)
        place = try Place(from: decoder)
        event = try AgentEventFields(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        try ids.encode(to: encoder)
        try place.encode(to: encoder)
        try event.encode(to: encoder)
    }
}

public typealias MessageStreamChunk = ReplyChunk<ReplyStream>
public typealias AgentChunk = ReplyChunk<ContributionStream>

/// MESSAGE_STREAM_START: the reply to `inReplyTo` begins.
public struct MessageStreamStart: FramePayload, Equatable {
    public static let frameType = FrameType.messageStreamStart
    public var messageId: String
    public var conversationId: String
    public var role: String
    public var inReplyTo: String
    /// The answer's expected length in characters, when the engine knows it.
    public var estimatedLength: Int?

    public init(messageId: String, conversationId: String, role: String, inReplyTo: String, estimatedLength: Int? = nil)
    {
        self.messageId = messageId
        self.conversationId = conversationId
        self.role = role
        self.inReplyTo = inReplyTo
        self.estimatedLength = estimatedLength
    }
}

/// MESSAGE_STREAM_END: the reply's whole text and how it ended.
public struct MessageStreamEnd: FramePayload, Equatable {
    public static let frameType = FrameType.messageStreamEnd

    public struct FinalMessage: Codable, Sendable, Equatable {
        public var id: String
        public var conversationId: String
        public var role: String
        public var content: String
        /// Epoch milliseconds.
        public var createdAt: Int64?

        public init(id: String, conversationId: String, role: String, content: String, createdAt: Int64? = nil) {
            self.id = id
            self.conversationId = conversationId
            self.role = role
            self.content = content
            self.createdAt = createdAt
        }
    }

    public struct Metadata: Codable, Sendable, Equatable {
        public var chunks: Int
        public var durationMs: Int?
        public var engine: String
        /// Absent for a completed answer; "failed" or "stopped" otherwise.
        public var status: String?
        /// A failed answer's error message.
        public var error: String?
        /// The orchestrator's own reply (`engine: "fallback"`): the final role that failed.
        public var failedRole: String?

        public init(
            chunks: Int, durationMs: Int? = nil, engine: String, status: String? = nil, error: String? = nil,
            failedRole: String? = nil
        ) {
            self.chunks = chunks
            self.durationMs = durationMs
            self.engine = engine
            self.status = status
            self.error = error
            self.failedRole = failedRole
        }
    }

    public var messageId: String
    public var finalMessage: FinalMessage
    public var metadata: Metadata

    public init(messageId: String, finalMessage: FinalMessage, metadata: Metadata) {
        self.messageId = messageId
        self.finalMessage = finalMessage
        self.metadata = metadata
    }
}

/// node_progress: a workflow llm node's chunk and the text so far (a client that joins late, or misses a
/// frame, still shows the whole partial output).
public struct LLMNodeProgress: FramePayload, Equatable {
    public static let frameType = WorkflowNodeTask.progressFrame

    public struct PartialOutputs: Codable, Sendable, Equatable {
        public var text: String
    }

    public var workflowId: String
    public var nodeId: String
    /// Always "running".
    public var status: String
    public var delta: String
    /// The chunk's index in the answer (0, 1, 2, …).
    public var position: Int
    public var partialOutputs: PartialOutputs
    /// `WorkflowNodeTask.timestamp`.
    public var timestamp: String

    public init(node: WorkflowNodeTask, delta: String, position: Int, text: String, at epochMilliseconds: Int64) {
        self.workflowId = node.runId
        self.nodeId = node.nodeId
        self.status = "running"
        self.delta = delta
        self.position = position
        self.partialOutputs = PartialOutputs(text: text)
        self.timestamp = WorkflowNodeTask.timestamp(epochMilliseconds)
    }

    enum CodingKeys: String, CodingKey {
        case workflowId = "workflow_id", nodeId = "node_id", status, delta, position,
            partialOutputs = "partial_outputs", timestamp
    }
}

/// A reply's message id names the user message it answers: `reply-<message id>`, or
/// `reply-<message id>-<role>` for a role's own reply in a collaboration (its final reply keeps the
/// plain form, so a client sees one reply per message). The user message's id is also the run's id,
/// which readers of a channel find a reply's run by.
public enum ReplyID {
    private static let prefix = "reply-"

    /// The reply to `messageID`.
    public static func answering(_ messageID: String) -> String { prefix + messageID }

    /// One role's own reply to `messageID`.
    public static func answering(_ messageID: String, role: String) -> String {
        "\(prefix)\(messageID)-\(role.lowercased())"
    }

    /// What follows the prefix (the message id, and a role's suffix if any); nil for an id that is no
    /// reply's.
    public static func answered(by replyID: String) -> String? {
        replyID.hasPrefix(prefix) ? String(replyID.dropFirst(prefix.count)) : nil
    }
}
