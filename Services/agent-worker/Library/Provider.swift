import Foundation
import SwitchboardContracts
import SwitchboardRuntime
import Synchronization

/// What a role is asked: its instructions, the user's message, the conversation so far and the results
/// of the roles it builds on.
public struct ProviderRequest: Sendable, Hashable {
    public var role: String
    public var responsibility: String?
    public var systemPrompt: String?
    public var userMessage: String
    public var contributions: [RoleContribution]
    public var history: [ConversationTurn]
    /// The part of the answer an earlier attempt already streamed (its worker died): the provider goes on
    /// after it instead of answering from the start.
    public var answerSoFar: String
    /// Functions the model may call (a voice device's MCP tools); a provider without function calling
    /// ignores them.
    public var tools: [DeviceTool]
    /// The model's earlier rounds of this answer that ended in tool calls, with their results.
    public var toolRounds: [ToolRound]
    /// False on the last round: the tools stay listed (the rounds refer to them) but the model must answer.
    public var mayCallTools: Bool

    public init(
        role: String, responsibility: String? = nil, systemPrompt: String? = nil, userMessage: String,
        contributions: [RoleContribution] = [], history: [ConversationTurn] = [], answerSoFar: String = "",
        tools: [DeviceTool] = [], toolRounds: [ToolRound] = [], mayCallTools: Bool = true
    ) {
        self.role = role
        self.responsibility = responsibility
        self.systemPrompt = systemPrompt
        self.userMessage = userMessage
        self.contributions = contributions
        self.history = history
        self.answerSoFar = answerSoFar
        self.tools = tools
        self.toolRounds = toolRounds
        self.mayCallTools = mayCallTools
    }

    /// The user turn a chat model sees: the message, then the team's results so far.
    public var userTurn: String {
        guard !contributions.isEmpty else { return userMessage }
        let results = contributions.map { "\($0.role): \($0.content)" }.joined(separator: "\n\n")
        return "\(userMessage)\n\nYour colleagues' results so far:\n\n\(results)"
    }
}

/// A source of a role's text, streamed as deltas of any size.
public protocol ChatProvider: Sendable {
    /// For logs and metrics: `offline` or `openai`.
    var kind: String { get }
    /// Streams the answer's text; returns the tool calls the model ended with instead of finishing
    /// (none: the answer is complete).
    @discardableResult
    func stream(_ request: ProviderRequest, onDelta: (String) async throws -> Void) async throws -> [ToolCall]
    /// The answer's length in characters (`ChatCentreDialect.length`) when known before it streams.
    func estimatedLength(of request: ProviderRequest) -> Int?
}

extension ChatProvider {
    public func estimatedLength(of request: ProviderRequest) -> Int? { nil }
}

public struct ProviderError: Error, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String {
            case http, connect, disconnected, timeout, streamError, malformed, circuitOpen, notAllowed
        }
        private let value: Value
        /// The server answered with an error status.
        public static let http = Code(value: .http)
        /// No connection could be made.
        public static let connect = Code(value: .connect)
        /// The stream ended before `[DONE]`.
        public static let disconnected = Code(value: .disconnected)
        public static let timeout = Code(value: .timeout)
        /// The server sent an error object inside the stream.
        public static let streamError = Code(value: .streamError)
        public static let malformed = Code(value: .malformed)
        /// Too many recent failures: the provider is not called for a while.
        public static let circuitOpen = Code(value: .circuitOpen)
        /// The task names a provider this worker's allow-list does not have (`ProviderAllowList`).
        public static let notAllowed = Code(value: .notAllowed)
        public var description: String { value.rawValue }
    }

    public var code: Code
    public var message: String
    public var status: Int?
    /// Retries made before this error was final (set by `ResilientProvider`).
    public var retries = 0
    public var file: String
    public var line: Int

    public init(_ code: Code, _ message: String, status: Int? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.status = status
        self.file = file
        self.line = line
    }

    /// 429, 5xx, connection failures, timeouts and cut streams may succeed on another try.
    public var isRetryable: Bool {
        switch code {
        case .http: return status == 429 || (status ?? 0) >= 500
        case .connect, .disconnected, .timeout: return true
        default: return false
        }
    }

    public var description: String {
        "\(code)\(status.map { " \($0)" } ?? ""): \(message)"
    }
}

/// One breaker per provider endpoint, shared by every task of the worker.
public final class CircuitBreakers: Sendable {
    private let breakers = Mutex<[String: CircuitBreaker]>([:])
    private let template: CircuitBreaker

    public init(template: CircuitBreaker = CircuitBreaker()) {
        self.template = template
    }

    func allow(_ key: String) -> Bool {
        breakers.withLock { $0[key, default: template].allow(now: .now) }
    }

    func recordSuccess(_ key: String) {
        breakers.withLock { $0[key, default: template].recordSuccess() }
    }

    func recordFailure(_ key: String) {
        breakers.withLock { $0[key, default: template].recordFailure(now: .now) }
    }

    public func state(_ key: String) -> CircuitBreaker.State {
        breakers.withLock { $0[key, default: template].state }
    }
}

/// Retries a call that failed before any text arrived, behind the provider's circuit breaker, as seed
/// 001's StreamErrorHandler does: at most 3 retries, retry n waiting 1 s · 2ⁿ (2, 4, 8 s). Once text
/// has gone to the client a retry would repeat it, so a failure after that is final.
public struct ResilientProvider: ChatProvider {
    public struct Policy: Sendable, Hashable {
        public var maxRetries = 3
        public var retryDelay: Duration = .seconds(1)
        public var backoffFactor = 2.0

        public init(maxRetries: Int = 3, retryDelay: Duration = .seconds(1), backoffFactor: Double = 2) {
            self.maxRetries = maxRetries
            self.retryDelay = retryDelay
            self.backoffFactor = backoffFactor
        }

        /// The wait before retry `retry` (1 = the first): the seed's `retry_delay * backoff_factor ** retry_count`,
        /// its count raised before the wait is computed.
        public func delay(beforeRetry retry: Int) -> Duration {
            retryDelay * Foundation.pow(backoffFactor, Double(retry))
        }
    }

    public let base: any ChatProvider
    public let breakerKey: String
    public let breakers: CircuitBreakers
    public let policy: Policy

    public init(base: any ChatProvider, breakerKey: String, breakers: CircuitBreakers, policy: Policy = Policy()) {
        self.base = base
        self.breakerKey = breakerKey
        self.breakers = breakers
        self.policy = policy
    }

    public var kind: String { base.kind }

    @discardableResult
    public func stream(_ request: ProviderRequest, onDelta: (String) async throws -> Void) async throws -> [ToolCall] {
        var retries = 0
        while true {
            guard breakers.allow(breakerKey) else {
                var error = ProviderError(
                    .circuitOpen, "\(base.kind) provider failed repeatedly; not calling it for a while")
                error.retries = retries
                throw error
            }
            var delivered = false
            do {
                let calls = try await base.stream(request) { delta in
                    delivered = true
                    try await onDelta(delta)
                }
                breakers.recordSuccess(breakerKey)
                return calls
            } catch var error as ProviderError {
                breakers.recordFailure(breakerKey)
                guard error.isRetryable, !delivered, retries < policy.maxRetries else {
                    error.retries = retries
                    throw error
                }
                retries += 1
                try await Task.sleep(for: policy.delay(beforeRetry: retries))
            }
        }
    }
}

/// The OpenAI-compatible servers this worker may call, and the key each gets: from the worker's own
/// SWITCHBOARD_AGENT_PROVIDERS, never from the task. A task (from a team file, or anything that can
/// write to Kafka) names a base URL; only a listed one is called, and only with the key of the variable
/// its entry names, so no task can send an environment variable of its choice to a server of its choice.
public struct ProviderAllowList: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// Without a trailing slash.
        public var baseURL: String
        /// The environment variable holding its key; nil: no `Authorization` header.
        public var keyVariable: String?
    }

    public private(set) var entries: [Entry] = []

    public init(entries: [Entry] = []) {
        self.entries = entries
    }

    /// `BASE_URL[=KEY_VARIABLE]`, comma-separated, e.g.
    /// `https://api.openai.com/v1=OPENAI_API_KEY,http://127.0.0.1:11434/v1`.
    public init(parsing text: String) throws(ProviderAllowListError) {
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            // The URL's own '=' (a query) is not supported: a base URL has none.
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let base = Self.normalized(parts[0])
            guard let url = URL(string: base), ["http", "https"].contains(url.scheme?.lowercased() ?? ""),
                url.host != nil
            else {
                throw ProviderAllowListError(
                    description: "SWITCHBOARD_AGENT_PROVIDERS: \(parts[0]) is not an http(s) base URL")
            }
            let variable = parts.count == 2 ? parts[1].trimmingCharacters(in: .whitespaces) : nil
            if let variable, variable.isEmpty || !variable.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) {
                throw ProviderAllowListError(
                    description: "SWITCHBOARD_AGENT_PROVIDERS: \(variable) is not an environment variable name")
            }
            entries.append(Entry(baseURL: base, keyVariable: variable))
        }
    }

    /// The entry for a task's base URL, or nil when it is not allowed.
    public func entry(for baseURL: String?) -> Entry? {
        guard let baseURL else { return nil }
        let wanted = Self.normalized(baseURL)
        return entries.first { $0.baseURL == wanted }
    }

    static func normalized(_ url: String) -> String {
        var url = url.trimmingCharacters(in: .whitespaces)
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }
}

public struct ProviderAllowListError: Error, CustomStringConvertible {
    public var description: String
}

/// Stands in for a provider the allow-list refused: fails the role at once, with the reason.
struct RefusedProvider: ChatProvider {
    let baseURL: String

    var kind: String { "openai" }

    func stream(_ request: ProviderRequest, onDelta: (String) async throws -> Void) async throws -> [ToolCall] {
        throw ProviderError(
            .notAllowed,
            "provider \(baseURL) is not in this agent-worker's SWITCHBOARD_AGENT_PROVIDERS; it is not called")
    }
}
