import Foundation

/// A role's state in a conversation (seed 000, "角色协作状态流").
public enum RoleStatus: String, Codable, Sendable, CaseIterable {
    case idle = "IDLE"
    case analyzing = "ANALYZING"
    case thinking = "THINKING"
    case collaborating = "COLLABORATING"
    case responding = "RESPONDING"
    case error = "ERROR"
}

/// Seed 000's role state machine, exactly: a transition not in `allowed` is a bug, never shown to a client.
public struct RoleStateMachine: Sendable, Hashable {
    public static let allowed: [RoleStatus: Set<RoleStatus>] = [
        .idle: [.analyzing, .thinking],
        .analyzing: [.thinking, .collaborating, .error],
        .thinking: [.responding, .collaborating, .error],
        .collaborating: [.thinking, .responding, .error],
        .responding: [.idle, .error],
        .error: [.idle, .thinking],
    ]

    public static func canTransition(from: RoleStatus, to: RoleStatus) -> Bool {
        allowed[from]?.contains(to) ?? false
    }

    /// The states from which `target` may be entered.
    public static func sources(of target: RoleStatus) -> [RoleStatus] {
        RoleStatus.allCases.filter { canTransition(from: $0, to: target) }
    }

    public enum Action: Sendable, Hashable {
        /// Legal: apply and announce.
        case emit(from: RoleStatus, to: RoleStatus)
        /// Illegal: log and count, announce nothing, keep the current state.
        case reject(from: RoleStatus, to: RoleStatus)
    }

    public private(set) var status: RoleStatus

    public init(status: RoleStatus = .idle) {
        self.status = status
    }

    public mutating func transition(to target: RoleStatus) -> Action {
        guard Self.canTransition(from: status, to: target) else { return .reject(from: status, to: target) }
        defer { status = target }
        return .emit(from: status, to: target)
    }
}

/// How a team works on one message (seed 000's coordination patterns, plus `direct` for a message one
/// role can answer alone).
public enum CollaborationPattern: String, Codable, Sendable, CaseIterable {
    case direct, sequential, parallel, hierarchical, dynamic
}

/// The engines a role can talk to: the embedded offline engine, or any OpenAI-compatible Chat Completions
/// server (OpenAI, vLLM, llama.cpp's server, Ollama).
public enum ProviderKind: String, Codable, Sendable, CaseIterable {
    case offline, openai
}

/// Which model a role talks to (`ProviderKind`). The key itself never travels: only the name of the
/// environment variable the agent-worker reads it from.
public struct ProviderSpec: Codable, Sendable, Hashable {
    public var kind: String
    public var baseURL: String?
    public var model: String?
    public var apiKeyEnv: String?
    /// Whole-request limit; the agent-worker also bounds the connect and idle times.
    public var timeoutSeconds: Double?

    public init(
        kind: String, baseURL: String? = nil, model: String? = nil, apiKeyEnv: String? = nil,
        timeoutSeconds: Double? = nil
    ) {
        self.kind = kind
        self.baseURL = baseURL
        self.model = model
        self.apiKeyEnv = apiKeyEnv
        self.timeoutSeconds = timeoutSeconds
    }

    public static let offline = ProviderSpec(kind: ProviderKind.offline.rawValue)
    public static let kinds = Set(ProviderKind.allCases.map(\.rawValue))

    /// The engine `kind` names; nil for a kind this version does not know (the team file's check refuses it).
    public var engine: ProviderKind? { ProviderKind(rawValue: kind) }

    /// Circuit breakers are per provider endpoint and model.
    public var breakerKey: String { "\(kind)|\(baseURL ?? "")|\(model ?? "")" }
}

/// What one role produced during a run, handed to the roles that build on it and reported at the end.
public struct RoleContribution: Codable, Sendable, Hashable {
    public var role: String
    /// `completed` or `failed`.
    public var status: String
    public var content: String
    public var error: String?
    public var durationMs: Int?

    public init(role: String, status: String, content: String, error: String? = nil, durationMs: Int? = nil) {
        self.role = role
        self.status = status
        self.content = content
        self.error = error
        self.durationMs = durationMs
    }
}

/// One earlier message of the conversation, given to the roles as context.
public struct ConversationTurn: Codable, Sendable, Hashable {
    /// `user` or `assistant`.
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// A role finished or failed its task; consumed by the orchestrator, which decides the next step.
public struct AgentTaskCompleted: EventPayload, Equatable {
    public static let eventType = "agent.task.completed"

    public var runId: String
    public var taskId: String
    public var conversationId: String
    public var role: String
    /// `completed` or `failed`.
    public var status: String
    /// The whole answer, or what was streamed before a failure.
    public var content: String
    public var error: String?
    /// Chunks the client has already seen of this role's answer.
    public var chunks: Int
    public var startedAt: Int64
    public var finishedAt: Int64

    public init(
        runId: String, taskId: String, conversationId: String, role: String, status: String, content: String,
        error: String? = nil, chunks: Int, startedAt: Int64, finishedAt: Int64
    ) {
        self.runId = runId
        self.taskId = taskId
        self.conversationId = conversationId
        self.role = role
        self.status = status
        self.content = content
        self.error = error
        self.chunks = chunks
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }

    public static let completed = "completed"
    public static let failed = "failed"
    /// Stopped on the user's request; `content` is what was generated until then.
    public static let stopped = "stopped"
}

/// What happens to a message that arrives while the conversation's previous run is in progress.
public enum BusyPolicy: String, Codable, Sendable, CaseIterable {
    /// Answered after the run (the default).
    case enqueue
    /// The run is stopped and this message answered next.
    case interrupt
    /// Not answered: the client gets MESSAGE_REJECTED.
    case reject
}

extension BusyPolicy {
    /// Messages that may wait for a busy conversation under `enqueue`; more are answered
    /// MESSAGE_REJECTED `queue_full` (docs/protocol.md).
    public static let maxQueuedMessages = 20
}

/// The user asked to stop the conversation's run (`POST /chat/interrupt`, the INTERRUPT command).
/// Travels on `sb.chat.requests`, keyed by the conversation, so it is ordered with its messages.
public struct ChatInterruptRequested: EventPayload, Equatable {
    public static let eventType = "chat.interrupt.requested"

    public var conversationId: String
    public var userId: String
    /// The client's command id or the HTTP request's id.
    public var requestId: String
    public var gateway: String

    public init(conversationId: String, userId: String, requestId: String, gateway: String) {
        self.conversationId = conversationId
        self.userId = userId
        self.requestId = requestId
        self.gateway = gateway
    }
}

/// The user asked that a role lead the conversation's next run (REQUEST_ROLE_FOCUS). Travels on
/// `sb.chat.requests`, keyed by the conversation, so it is ordered with its messages.
public struct ChatRoleFocusRequested: EventPayload, Equatable {
    public static let eventType = "chat.role.focus.requested"

    public var conversationId: String
    public var userId: String
    /// A role of the team (the gateway checked it against the team the orchestrator announced).
    public var role: String
    public var requestId: String
    public var gateway: String

    public init(conversationId: String, userId: String, role: String, requestId: String, gateway: String) {
        self.conversationId = conversationId
        self.userId = userId
        self.role = role
        self.requestId = requestId
        self.gateway = gateway
    }
}

/// What the gateways know of the orchestrator's team: its name and roles (for REQUEST_ROLE_FOCUS, the
/// role-state snapshot and `GET /v1/models`). Each orchestrator writes it to Redis when it starts;
/// prompts and providers stay with the orchestrator.
public struct TeamCard: Codable, Sendable, Equatable {
    public struct Role: Codable, Sendable, Equatable {
        public var name: String
        public var responsibility: String

        public init(name: String, responsibility: String) {
            self.name = name
            self.responsibility = responsibility
        }
    }

    public var name: String
    public var roles: [Role]
    public var finalRole: String

    public init(name: String, roles: [Role], finalRole: String) {
        self.name = name
        self.roles = roles
        self.finalRole = finalRole
    }

    /// The team's spelling of a role name, matched case-insensitively.
    public func role(named name: String) -> String? {
        roles.first { $0.name.lowercased() == name.lowercased() }?.name
    }
}

/// Frame types of the multi-agent work (seed 000 chat centre, seed 001 agent events).
extension FrameType {
    public static let roleStatusChange = "ROLE_STATUS_CHANGE"
    public static let roleThinkingStart = "ROLE_THINKING_START"
    public static let roleThinkingEnd = "ROLE_THINKING_END"
    public static let roleAssigned = "ROLE_ASSIGNED"
    public static let collaborationStart = "COLLABORATION_START"
    public static let collaborationProgress = "COLLABORATION_PROGRESS"
    public static let collaborationComplete = "COLLABORATION_COMPLETE"
    /// Seed 000's coordination events, sent beside START / COMPLETE with the seed's own fields.
    public static let collaborationInitiated = "COLLABORATION_INITIATED"
    public static let collaborationCompleted = "COLLABORATION_COMPLETED"
    /// Seed 001 `agent_start` / `llm_chunk` / `agent_complete` / `error` of a role, on the same channels.
    public static let agentStart = "AGENT_START"
    public static let agentChunk = "AGENT_CHUNK"
    public static let agentComplete = "AGENT_COMPLETE"
    public static let agentError = "AGENT_ERROR"
    /// A message not answered because the conversation was busy and its policy is `reject`.
    public static let messageRejected = "MESSAGE_REJECTED"
    /// Every role's current state, sent (unnumbered, never stored) to a client joining a conversation.
    public static let roleStatusSnapshot = "ROLE_STATUS_SNAPSHOT"
}

/// Seed 001's event shape: `{event_type, agent_source, timestamp, payload}`.
public enum AgentEvent {
    public static let llmChunk = "llm_chunk"
    public static let agentStart = "agent_start"
    public static let agentComplete = "agent_complete"
    public static let error = "error"

    public static func isoTimestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// `error`'s payload as seed 001's StreamErrorHandler builds it: `{error, error_type, context, retry_count}`.
    public struct ErrorPayload: Codable, Sendable, Equatable {
        /// Where it happened; the seed passes its handler's context dictionary, left open.
        public struct Context: Codable, Sendable, Equatable {
            public var agentSource: String
            public var conversationId: String?
            public var runId: String?
            public var provider: String?

            public init(
                agentSource: String, conversationId: String? = nil, runId: String? = nil, provider: String? = nil
            ) {
                self.agentSource = agentSource
                self.conversationId = conversationId
                self.runId = runId
                self.provider = provider
            }

            enum CodingKeys: String, CodingKey {
                case agentSource = "agent_source", conversationId = "conversation_id", runId = "run_id", provider
            }
        }

        public var error: String
        public var errorType: String
        public var context: Context
        /// Retries made before giving up (seed 001: at most 3).
        public var retryCount: Int

        public init(error: String, errorType: String, context: Context, retryCount: Int) {
            self.error = error
            self.errorType = errorType
            self.context = context
            self.retryCount = retryCount
        }

        enum CodingKeys: String, CodingKey {
            case error, errorType = "error_type", context, retryCount = "retry_count"
        }
    }
}

extension JSONValue {
    /// A typed payload as a frame's data.
    public init(encoding value: some Encodable) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))
    }
}
