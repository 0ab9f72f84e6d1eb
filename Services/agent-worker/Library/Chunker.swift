/// Groups a model's text deltas into client chunks (seed 000): 5–15 tokens cut at word boundaries, or
/// whatever has waited 50–100 ms, whichever comes first. Works on Characters and holds back the last one
/// until more text (or the end) arrives, because the next delta may extend it (a combining accent, the
/// rest of an emoji ZWJ sequence or flag): a grapheme cluster is never split across chunks.
public struct Chunker: Sendable {
    public struct Settings: Sendable, Hashable {
        public var minTokens = 5
        public var maxTokens = 15
        /// How long text may wait before it goes out anyway (50–100 ms).
        public var interval: Duration = .milliseconds(75)
        /// A time-based chunk's size limit, in characters.
        public var maxCharacters = 50

        public init() {}
    }

    public let settings: Settings
    private var buffer: [Character] = []
    private var pendingSince: ContinuousClock.Instant?

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    public var isEmpty: Bool { buffer.isEmpty }

    /// Adds a delta; returns the chunks now complete by token count.
    public mutating func append(_ text: String, now: ContinuousClock.Instant) -> [String] {
        guard !text.isEmpty else { return [] }
        // Re-join the held-back character with the new text so clusters spanning the deltas form again.
        let held = buffer.popLast().map(String.init) ?? ""
        buffer.append(contentsOf: Array(held + text))
        if pendingSince == nil { pendingSince = now }
        var chunks: [String] = []
        while true {
            let boundaries = Self.boundaries(buffer)
            guard boundaries.count >= settings.minTokens else { break }
            chunks.append(take(boundaries[min(boundaries.count, settings.maxTokens) - 1]))
        }
        if !chunks.isEmpty { pendingSince = buffer.isEmpty ? nil : now }
        return chunks
    }

    /// The time rule: text waiting `interval` goes out (all but the held-back character).
    public mutating func tick(now: ContinuousClock.Instant) -> [String] {
        guard let since = pendingSince, now - since >= settings.interval, buffer.count > 1 else { return [] }
        var chunks: [String] = []
        while buffer.count > 1 {
            chunks.append(take(min(buffer.count - 1, settings.maxCharacters)))
        }
        pendingSince = now
        return chunks
    }

    /// When `tick` will next cut text out, or nil while nothing could go (all but the held-back character
    /// goes, so one character waits for more text or the end). Never earlier than a deadline it gave
    /// before: the time is always a later instant plus `interval`.
    public var nextDeadline: ContinuousClock.Instant? {
        guard let since = pendingSince, buffer.count > 1 else { return nil }
        return since + settings.interval
    }

    /// The end of the text: everything left, still cut at most `maxTokens` tokens a chunk.
    public mutating func finish() -> [String] {
        var chunks: [String] = []
        while !buffer.isEmpty {
            let boundaries = Self.boundaries(buffer) + [buffer.count]
            chunks.append(take(boundaries[min(boundaries.count, settings.maxTokens) - 1]))
        }
        pendingSince = nil
        return chunks
    }

    private mutating func take(_ count: Int) -> String {
        let chunk = String(buffer[..<count])
        buffer.removeFirst(count)
        return chunk
    }

    /// Indices where a new token starts (never 0): after whitespace, and around ideographs (CJK text has
    /// no spaces; each ideograph is a token).
    static func boundaries(_ characters: [Character]) -> [Int] {
        var result: [Int] = []
        guard characters.count > 1 else { return result }
        for index in 1..<characters.count {
            let previous = characters[index - 1]
            let current = characters[index]
            if current.isWhitespace { continue }
            if previous.isWhitespace || isIdeograph(current) || isIdeograph(previous) { result.append(index) }
        }
        return result
    }

    /// Tokens in a piece of text, by the same rule.
    public static func tokenCount(_ text: String) -> Int {
        let characters = Array(text)
        return characters.isEmpty ? 0 : boundaries(characters).count + 1
    }

    static func isIdeograph(_ character: Character) -> Bool {
        guard let scalar = character.unicodeScalars.first else { return false }
        return (0x3040...0x30FF).contains(scalar.value) || (0x3400...0x9FFF).contains(scalar.value)
            || (0xAC00...0xD7AF).contains(scalar.value) || (0x20000...0x2FFFF).contains(scalar.value)
            || (0xFF00...0xFFEF).contains(scalar.value) || (0x3000...0x303F).contains(scalar.value)
    }
}
