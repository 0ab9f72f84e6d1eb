import Foundation

/// A user message accepted by a gateway.
public struct ChatMessageSubmitted: EventPayload, Equatable {
    public static let eventType = "chat.message.submitted"

    /// Server-assigned id of the user's message.
    public var messageId: String
    /// The id of the client's command, used to de-duplicate retries.
    public var clientMessageId: String
    public var conversationId: String
    public var userId: String
    public var content: String
    /// The gateway instance that accepted the message.
    public var gateway: String
    /// The collaboration pattern the user asked for (`data.pattern`); absent: the orchestrator chooses.
    public var pattern: String?
    /// What to do if the conversation is busy (`enqueue`, `interrupt`, `reject`); absent: enqueue.
    public var busyPolicy: String?
    /// The role that leads this message's run (writes the reply); absent: the conversation's focus, if any.
    public var leadRole: String?
    /// A voice device's MCP tools (docs/voice.md#device-tools): the replying role may call them.
    public var deviceTools: DeviceToolbox?

    public init(
        messageId: String, clientMessageId: String, conversationId: String, userId: String, content: String,
        gateway: String, pattern: String? = nil, busyPolicy: String? = nil, leadRole: String? = nil,
        deviceTools: DeviceToolbox? = nil
    ) {
        self.messageId = messageId
        self.clientMessageId = clientMessageId
        self.conversationId = conversationId
        self.userId = userId
        self.content = content
        self.gateway = gateway
        self.pattern = pattern
        self.busyPolicy = busyPolicy
        self.leadRole = leadRole
        self.deviceTools = deviceTools
    }
}

/// Work for one AI role: generate a reply and stream it to the conversation.
public struct AgentTaskRequested: EventPayload, Equatable {
    public static let eventType = "agent.task.requested"

    public var taskId: String
    public var conversationId: String
    public var userId: String
    /// The id of the assistant message the tokens belong to.
    public var replyMessageId: String
    /// The user's message this task answers.
    public var inReplyTo: String
    public var role: String
    /// The user's message.
    public var prompt: String
    // Collaboration fields; absent in tasks of older orchestrators (one role answering alone).
    /// The collaboration run (the user message's id) the task belongs to.
    public var runId: String?
    public var responsibility: String?
    public var systemPrompt: String?
    public var provider: ProviderSpec?
    /// The results of the roles this one builds on.
    public var contributions: [RoleContribution]?
    /// Recent messages of the conversation, oldest first.
    public var history: [ConversationTurn]?
    /// True for the role whose answer is the reply (MESSAGE_STREAM_*); others stream AGENT_CHUNK.
    public var isFinal: Bool?
    /// Epoch milliseconds when the role entered THINKING, for ROLE_THINKING_END's actualTime.
    public var dispatchedAt: Int64?
    /// Set for a workflow run's llm node: its tokens go to the run's channel as node progress, and no
    /// conversation or role state is touched (there is no conversation).
    public var workflowNode: WorkflowNodeTask?
    /// The device tools the role may call (the replying role of a voice turn only).
    public var deviceTools: DeviceToolbox?
    /// The name of the topic the task's result (`AgentTaskCompleted`) goes to, keyed by `conversationId`,
    /// so only the requester reads it; absent (tasks of older requesters): the orchestrator's. See `replyTopic`.
    public var replyTo: String?

    public init(
        taskId: String, conversationId: String, userId: String, replyMessageId: String, inReplyTo: String,
        role: String, prompt: String, runId: String? = nil, responsibility: String? = nil, systemPrompt: String? = nil,
        provider: ProviderSpec? = nil, contributions: [RoleContribution]? = nil, history: [ConversationTurn]? = nil,
        isFinal: Bool? = nil, dispatchedAt: Int64? = nil, workflowNode: WorkflowNodeTask? = nil,
        deviceTools: DeviceToolbox? = nil, replyTo: String? = nil
    ) {
        self.taskId = taskId
        self.conversationId = conversationId
        self.userId = userId
        self.replyMessageId = replyMessageId
        self.inReplyTo = inReplyTo
        self.role = role
        self.prompt = prompt
        self.runId = runId
        self.responsibility = responsibility
        self.systemPrompt = systemPrompt
        self.provider = provider
        self.contributions = contributions
        self.history = history
        self.isFinal = isFinal
        self.dispatchedAt = dispatchedAt
        self.workflowNode = workflowNode
        self.deviceTools = deviceTools
        self.replyTo = replyTo
    }

    /// Where the result goes: the topic `replyTo` names, `Topics.agentResults` (the orchestrator's) when
    /// it names none or no topic of Switchboard's.
    public var replyTopic: TopicSpec {
        replyTo.flatMap(Topics.named) ?? Topics.agentResults
    }
}

/// The workflow run and llm node an agent task answers (docs/workflows.md, "node_progress").
public struct WorkflowNodeTask: Codable, Sendable, Hashable {
    public var runId: String
    public var nodeId: String

    public init(runId: String, nodeId: String) {
        self.runId = runId
        self.nodeId = nodeId
    }

    /// The frame a running llm node's tokens travel in, on `Channel.workflow(runId)`.
    public static let progressFrame = "node_progress"
    /// Agent tasks of workflow runs carry run ids with this prefix, apart from the collaboration runs
    /// the orchestrator stops (`RunControl.stopChannel`).
    public static let runPrefix = "wf:"

    /// ISO 8601 with milliseconds, the workflow protocol's timestamp form (seed 003).
    public static func timestamp(_ epochMilliseconds: Int64) -> String {
        Date(timeIntervalSince1970: Double(epochMilliseconds) / 1000)
            .formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}

/// Where a client-facing event is delivered.
public struct Channel: Hashable, Sendable, Codable, CustomStringConvertible {
    public enum Kind: String, Sendable, Codable, CaseIterable {
        case conversation, user, roles, system
        /// A workflow run's node and run events (docs/workflows.md).
        case workflow
    }

    public var kind: Kind
    public var id: String

    public init(_ kind: Kind, _ id: String) {
        self.kind = kind
        self.id = id
    }

    public static func conversation(_ id: String) -> Channel { Channel(.conversation, id) }
    public static func user(_ id: String) -> Channel { Channel(.user, id) }
    /// A conversation's role activity (the SSE stream `/api/v1/conversations/{id}/roles/activity`).
    public static func roles(_ conversationID: String) -> Channel { Channel(.roles, conversationID) }
    public static let system = Channel(.system, "all")
    public static func workflow(_ runID: String) -> Channel { Channel(.workflow, runID) }

    public var description: String { "\(kind.rawValue):\(id)" }

    public init?(_ string: String) {
        guard let colon = string.firstIndex(of: ":"), let kind = Kind(rawValue: String(string[..<colon])) else {
            return nil
        }
        let id = String(string[string.index(after: colon)...])
        guard !id.isEmpty else { return nil }
        self.init(kind, id)
    }

    public init(from decoder: any Decoder) throws {
        let string = try decoder.singleValueContainer().decode(String.self)
        guard let channel = Channel(string) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "bad channel \(string)"))
        }
        self = channel
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// Anything a client should see. The notifier publishes it to its channel without knowing its shape;
/// the gateway writes it to the channel's sockets as a frame of type `frameType`.
public struct ClientEvent: EventPayload, Equatable {
    public static let eventType = "client.event"

    public var channel: Channel
    /// The frame type the client sees (MESSAGE_STREAM_CHUNK, ROLE_STATUS_CHANGE…).
    public var frameType: String
    public var data: JSONValue
    /// Ephemeral events (typing, presence) are delivered live and never stored for recovery.
    public var ephemeral: Bool

    public init(channel: Channel, frameType: String, data: JSONValue, ephemeral: Bool = false) {
        self.channel = channel
        self.frameType = frameType
        self.data = data
        self.ephemeral = ephemeral
    }
}

/// Client frame types (seed 000) that the services emit.
public enum FrameType {
    public static let messageStreamStart = "MESSAGE_STREAM_START"
    public static let messageStreamChunk = "MESSAGE_STREAM_CHUNK"
    public static let messageStreamEnd = "MESSAGE_STREAM_END"
    public static let userNotification = "USER_NOTIFICATION"
    public static let systemStatus = "SYSTEM_STATUS"
    /// Presence in a conversation (ephemeral, like typing): a connection of `userId` started or
    /// stopped following it.
    public static let presenceJoin = "PRESENCE_JOIN"
    public static let presenceLeave = "PRESENCE_LEAVE"
}
