import SwitchboardVoice
import Testing

/// The `llm` frame's emotion from the answer: a leading firmware emoji, else the cue words.
@Suite struct EmotionTests {
    @Test(arguments: [
        ("😂 That is a good one", "funny", "😂"),
        ("🤔Let me see", "thinking", "🤔"),
        ("I'm sorry, I can't do that", "sad", "😔"),
        ("Great news, it is done!", "happy", "🙂"),
        ("Wow, that is amazing", "surprised", "😲"),
        ("Haha, what a joke", "laughing", "😆"),
        ("太好了，我很高兴", "happy", "🙂"),
        ("对不起，我做不到", "sad", "😔"),
        ("The meeting is at three", "neutral", "😶"),
        ("", "neutral", "😶"),
    ])
    func answersHaveTheirEmotion(text: String, emotion: String, emoji: String) {
        #expect(Emotion.classify(text) == Emotion.Reading(emotion: emotion, emoji: emoji))
    }

    @Test func theLeadingEmojiIsShownNotSpoken() {
        #expect(Emotion.strippingLeadingEmoji("😂 That is a good one") == "That is a good one")
        #expect(Emotion.strippingLeadingEmoji("🤔🤔hmm") == "hmm")
        #expect(Emotion.strippingLeadingEmoji("No emoji 😂 here") == "No emoji 😂 here")
        #expect(Emotion.strippingLeadingEmoji("😶") == "")
    }

    @Test func tiesGoToTheEarlierEmotionOfTheLexicon() {
        // One sad cue, one happy cue: sad is listed first.
        #expect(Emotion.classify("sorry, but good").emotion == "sad")
    }
}
