import Foundation
import SwitchboardContracts
import SwitchboardRuntime

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
