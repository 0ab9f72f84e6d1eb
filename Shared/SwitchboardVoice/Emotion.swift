import Foundation

/// The emotion of an answer for the `llm` frame (`{"type":"llm","emotion":…,"text":<emoji>}`), which
/// the firmware shows as a face. As xiaozhi-esp32-server reads it: an answer that starts with one of the
/// firmware's emoji has that emotion (and the emoji is not spoken); otherwise a small lexicon over the
/// first sentence decides (English and Chinese cue words; the emotion with the most cues wins, ties in
/// the order of `lexicon`); no cue: `neutral`. Deterministic, no model.
public enum Emotion {
    public struct Reading: Sendable, Equatable {
        public var emotion: String
        public var emoji: String

        public init(emotion: String, emoji: String) {
            self.emotion = emotion
            self.emoji = emoji
        }
    }

    /// The firmware's emotions and their emoji.
    public static let emoji: [(emotion: String, emoji: String)] = [
        ("neutral", "😶"), ("happy", "🙂"), ("laughing", "😆"), ("funny", "😂"), ("sad", "😔"), ("angry", "😠"),
        ("crying", "😭"), ("loving", "😍"), ("embarrassed", "😳"), ("surprised", "😲"), ("shocked", "😱"),
        ("thinking", "🤔"), ("winking", "😉"), ("cool", "😎"), ("relaxed", "😌"), ("delicious", "🤤"), ("kissy", "😘"),
        ("confident", "😏"), ("sleepy", "😴"), ("silly", "😜"), ("confused", "🙄"),
    ]

    public static let neutral = Reading(emotion: "neutral", emoji: "😶")

    /// Cue words per emotion: whole words for English, substrings for Chinese.
    static let lexicon: [(emotion: String, english: Set<String>, chinese: [String])] = [
        (
            "sad", ["sorry", "sad", "unfortunately", "regret", "failed", "unable", "cannot", "can't", "afraid"],
            ["抱歉", "对不起", "遗憾", "难过", "失败"]
        ),
        ("angry", ["angry", "annoyed", "furious", "outrageous"], ["生气", "愤怒"]),
        ("laughing", ["haha", "hahaha", "lol", "joke", "funny"], ["哈哈", "笑话"]),
        ("surprised", ["wow", "amazing", "incredible", "surprising", "astonishing"], ["哇", "惊讶", "居然"]),
        ("loving", ["love", "lovely", "dear", "sweet", "adore"], ["爱", "亲爱"]),
        (
            "happy",
            [
                "glad", "happy", "great", "wonderful", "excellent", "congratulations", "done", "delighted", "good",
                "nice",
            ],
            ["高兴", "开心", "太好了", "恭喜", "好的", "完成"]
        ),
        ("thinking", ["hmm", "perhaps", "maybe", "think", "consider", "wonder"], ["嗯", "也许", "可能", "想想"]),
        ("confused", ["confused", "unclear", "unsure"], ["困惑", "不清楚"]),
    ]

    public static func classify(_ text: String) -> Reading {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if let first = trimmed.first, let match = emoji.first(where: { $0.emoji == String(first) }) {
            return Reading(emotion: match.emotion, emoji: match.emoji)
        }
        let words = Set(trimmed.lowercased().split { !$0.isLetter && $0 != "'" }.map(String.init))
        var best: (emotion: String, score: Int)?
        for entry in lexicon {
            let score = entry.english.intersection(words).count + entry.chinese.filter { trimmed.contains($0) }.count
            if score > 0, score > (best?.score ?? 0) { best = (entry.emotion, score) }
        }
        guard let best, let match = emoji.first(where: { $0.emotion == best.emotion }) else { return neutral }
        return Reading(emotion: match.emotion, emoji: match.emoji)
    }

    /// The text without the firmware emoji it starts with (what is spoken), trimmed.
    public static func strippingLeadingEmoji(_ text: String) -> String {
        var trimmed = Substring(text.trimmingCharacters(in: .whitespacesAndNewlines))
        while let first = trimmed.first, emoji.contains(where: { $0.emoji == String(first) }) {
            trimmed = trimmed.dropFirst().drop { $0.isWhitespace }
        }
        return String(trimmed)
    }
}
