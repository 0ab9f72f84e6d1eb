import Foundation
import SwitchboardContracts
import SwitchboardRuntime

/// Stands in for a provider the allow-list refused: fails the role at once, with the reason.
struct RefusedProvider: ChatProvider {
    let baseURL: String

    var kind: ProviderKind { .openai }

    func stream(_ request: ProviderRequest, onDelta: (String) async throws -> Void) async throws -> [ToolCall] {
        throw ProviderError(
            .notAllowed,
            "provider \(baseURL) is not in this agent-worker's SWITCHBOARD_AGENT_PROVIDERS; it is not called")
    }
}
