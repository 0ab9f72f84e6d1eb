import Foundation
import SwitchboardContracts

/// The offline engine as a role's provider.
public struct OfflineProvider: ChatProvider {
    public let engine: OfflineEngine

    public init(engine: OfflineEngine) {
        self.engine = engine
    }

    public var kind: ProviderKind { .offline }

    /// The engine is deterministic: an answer resumed after `answerSoFar` is the rest of the same text.
    @discardableResult
    public func stream(_ request: ProviderRequest, onDelta: (String) async throws -> Void) async throws -> [ToolCall] {
        let text = OfflineEngine.compose(request)
        try await engine.stream(text: String(text.dropFirst(request.answerSoFar.count)), onToken: onDelta)
        return []
    }

    public func estimatedLength(of request: ProviderRequest) -> Int? {
        ChatCentreDialect.length(OfflineEngine.compose(request))
    }
}
