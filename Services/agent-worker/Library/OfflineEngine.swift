import Foundation
import SwitchboardContracts

/// A language engine that needs no model: it composes a reply from the prompt and streams it word by word
/// at a set rate after a first-token delay, so the platform runs, demonstrates and benchmarks anywhere.
/// It is not an AI: docs and README say how to point Switchboard at a real model.
public struct OfflineEngine: Sendable {
    public struct Settings: Sendable, Equatable {
        /// Tokens per second; 0 streams as fast as the bus takes them.
        public var tokensPerSecond: Double = 40
        public var firstTokenDelay: Duration = .milliseconds(150)

        public init(tokensPerSecond: Double = 40, firstTokenDelay: Duration = .milliseconds(150)) {
            self.tokensPerSecond = tokensPerSecond
            self.firstTokenDelay = firstTokenDelay
        }
    }

    public let settings: Settings

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// The reply's tokens: words with their following whitespace, so joining them gives the reply.
    public func reply(to prompt: String, role: String) -> [String] {
        let text = Self.compose(prompt: prompt, role: role)
        return Self.tokenize(text)
    }

    /// Produces the reply's tokens, paced, handing each to `onToken`; stops when the task is cancelled.
    public func generate(prompt: String, role: String, onToken: (String) async throws -> Void) async throws {
        try await stream(text: Self.compose(prompt: prompt, role: role), onToken: onToken)
    }

    /// Streams `text` word by word at the engine's pace.
    public func stream(text: String, onToken: (String) async throws -> Void) async throws {
        let tokens = Self.tokenize(text)
        if settings.firstTokenDelay > .zero { try await Task.sleep(for: settings.firstTokenDelay) }
        let interval: Duration? =
            settings.tokensPerSecond > 0 ? .nanoseconds(Int64(1e9 / settings.tokensPerSecond)) : nil
        let clock = ContinuousClock()
        var deadline = clock.now
        for (index, token) in tokens.enumerated() {
            if index > 0, let interval {
                // Pace against a deadline, not a sleep per token, so the rate does not drift.
                deadline = deadline.advanced(by: interval)
                try await clock.sleep(until: deadline)
            }
            try Task.checkCancellation()
            try await onToken(token)
        }
    }

    static func compose(prompt: String, role: String) -> String {
        let trimmed = prompt.trimmingCharacters(in: .whitespacesAndNewlines)
        let words = trimmed.split(whereSeparator: \.isWhitespace)
        let topic = words.prefix(12).joined(separator: " ")
        let focus = words.max(by: { $0.count < $1.count }).map(String.init) ?? "it"
        return """
            \(role) here. You wrote: "\(topic)\(words.count > 12 ? "…" : "")". \
            The key term I see is "\(focus)". \
            Your message has \(words.count) words and \(trimmed.count) characters. \
            This answer comes from Switchboard's offline engine, which composes replies without a model; \
            configure an OpenAI-compatible provider to get real answers.
            """
    }

    /// A role's reply in a collaboration: who it is and what it does, what the user asked, whose
    /// results it builds on; still plainly the offline engine.
    static func compose(_ request: ProviderRequest) -> String {
        guard request.responsibility != nil || !request.contributions.isEmpty else {
            return compose(prompt: request.userMessage, role: request.role)
        }
        let trimmed = request.userMessage.trimmingCharacters(in: .whitespacesAndNewlines)
        let words = trimmed.split(whereSeparator: \.isWhitespace)
        let topic = words.prefix(12).joined(separator: " ")
        let focus = words.max(by: { $0.count < $1.count }).map(String.init) ?? "it"
        var text = "\(request.role) here, the team's \(request.responsibility ?? "member"). "
        text += "You wrote: \"\(topic)\(words.count > 12 ? "…" : "")\". "
        if !request.contributions.isEmpty {
            let names = request.contributions.map(\.role)
            text += "I build on the work of \(names.joined(separator: ", ")). "
            if let last = request.contributions.last {
                let opening = last.content.split(whereSeparator: \.isWhitespace).prefix(6).joined(separator: " ")
                text += "\(last.role) began with \"\(opening)…\". "
            }
        }
        text += "As \(request.responsibility ?? "a member of the team"), the key term I see is \"\(focus)\". "
        text += "Your message has \(words.count) words and \(trimmed.count) characters. "
        text += "This answer comes from Switchboard's offline engine, which composes replies without a model; "
        text += "configure an OpenAI-compatible provider to get real answers."
        return text
    }

    /// Splits text into words that keep their trailing whitespace. Works on Characters, so a grapheme
    /// cluster (an emoji, a Chinese character) is never split.
    static func tokenize(_ text: String) -> [String] {
        var tokens: [String] = []
        var current = ""
        var inWhitespace = false
        for character in text {
            if character.isWhitespace {
                inWhitespace = true
                current.append(character)
            } else {
                if inWhitespace && !current.isEmpty {
                    tokens.append(current)
                    current = ""
                }
                inWhitespace = false
                current.append(character)
            }
        }
        if !current.isEmpty { tokens.append(current) }
        return tokens
    }
}
