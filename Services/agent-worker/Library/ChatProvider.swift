import Foundation
import SwitchboardContracts
import SwitchboardRuntime

/// A source of a role's text, streamed as deltas of any size.
public protocol ChatProvider: Sendable {
    /// For logs and metrics, and the offline engine's own paths.
    var kind: ProviderKind { get }
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
