import Foundation

/// Cuts a streamed answer into pieces to synthesise: the first at the first comma (early audio), later
/// ones at sentence punctuation. Fed token by token; a plain struct.
public struct SentenceSplitter: Sendable {
    static let sentenceEnds: Set<Character> = [".", "!", "?", ";", "。", "！", "？", "；", "\n"]
    static let commas: Set<Character> = [",", "，", "、", ":", "："]
    /// Pieces shorter than this wait for more text (a comma after one word is not worth a synthesis).
    public var minimumFirstLength = 4
    private var buffer = ""
    private var emittedAny = false

    public init() {}

    /// Adds streamed text; returns the pieces that are complete.
    public mutating func append(_ text: String) -> [String] {
        buffer += text
        var pieces: [String] = []
        while let cut = nextCut() {
            let piece = String(buffer[..<cut]).trimmingCharacters(in: .whitespacesAndNewlines)
            buffer = String(buffer[cut...])
            if !piece.isEmpty && piece.contains(where: { $0.isLetter || $0.isNumber }) {
                pieces.append(piece)
                emittedAny = true
            }
        }
        return pieces
    }

    /// The rest, at the end of the answer.
    public mutating func finish() -> String? {
        let rest = buffer.trimmingCharacters(in: .whitespacesAndNewlines)
        buffer = ""
        return rest.contains(where: { $0.isLetter || $0.isNumber }) ? rest : nil
    }

    private func nextCut() -> String.Index? {
        var index = buffer.startIndex
        while index < buffer.endIndex {
            let character = buffer[index]
            let next = buffer.index(after: index)
            let isEnd = Self.sentenceEnds.contains(character) || (!emittedAny && Self.commas.contains(character))
            // "3.5" or "e.g." mid-word is not an end: require whitespace (or CJK punctuation) after it.
            if isEnd {
                let isWide = character.unicodeScalars.first.map { $0.value > 0x2E80 } ?? false
                if isWide || character == "\n" || (next < buffer.endIndex && buffer[next].isWhitespace) {
                    let length = buffer.distance(from: buffer.startIndex, to: next)
                    if emittedAny || length >= minimumFirstLength { return next }
                }
            }
            index = next
        }
        return nil
    }
}
