import Foundation
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

@testable import AgentWorker
@testable import SwitchboardKafka

/// A small deterministic generator, so a failing case can be replayed from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum TextGenerator {
    /// Pieces that stress grapheme segmentation: CJK, ZWJ families, flags, skin tones, combining marks,
    /// and lone joiners and accents that attach to whatever precedes them.
    static let pieces = [
        "hello", "world", "Switchboard", " ", "  ", "\n", "你", "好", "世界", "这是一个测试", "。", "，", "👨‍👩‍👧‍👦", "🇫🇷", "🇯🇵",
        "🇺", "🇸", "e\u{301}", "👍🏽", "🏳️‍🌈", "한국어", "Zürich", "\u{200D}", "\u{301}", "\u{FE0F}", "a", "ok", "…", "data:",
    ]

    static func text(using rng: inout SplitMix64) -> String {
        (0..<Int.random(in: 0...120, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
    }

    /// Cuts a string at random Unicode scalar positions, even inside grapheme clusters, as a model's
    /// token stream may.
    static func deltas(of text: String, using rng: inout SplitMix64) -> [String] {
        let scalars = Array(text.unicodeScalars)
        var result: [String] = []
        var index = 0
        while index < scalars.count {
            let length = Int.random(in: 1...8, using: &rng)
            let end = min(index + length, scalars.count)
            var piece = String.UnicodeScalarView()
            piece.append(contentsOf: scalars[index..<end])
            result.append(String(piece))
            index = end
        }
        return result
    }

    /// Scalar offsets where the text's grapheme clusters begin and end.
    static func clusterBoundaries(_ text: String) -> Set<Int> {
        var boundaries: Set<Int> = [0]
        var offset = 0
        for character in text {
            offset += character.unicodeScalars.count
            boundaries.insert(offset)
        }
        return boundaries
    }
}

@Suite struct ChunkerTests {
    @Test(arguments: 0..<300)
    func chunksRebuildTheTextAndNeverSplitAGraphemeCluster(seed: Int) {
        var rng = SplitMix64(state: UInt64(seed))
        let text = TextGenerator.text(using: &rng)
        var chunker = Chunker()
        var now = ContinuousClock.now
        var chunks: [String] = []
        for delta in TextGenerator.deltas(of: text, using: &rng) {
            now = now.advanced(by: .milliseconds(Int.random(in: 0...60, using: &rng)))
            chunks += chunker.append(delta, now: now)
            if Bool.random(using: &rng) {
                now = now.advanced(by: .milliseconds(Int.random(in: 0...120, using: &rng)))
                chunks += chunker.tick(now: now)
            }
        }
        chunks += chunker.finish()

        #expect(Array(chunks.joined().unicodeScalars) == Array(text.unicodeScalars), "seed \(seed)")
        #expect(chunks.allSatisfy { !$0.isEmpty }, "seed \(seed)")
        let clusters = TextGenerator.clusterBoundaries(text)
        var offset = 0
        for chunk in chunks {
            offset += chunk.unicodeScalars.count
            #expect(
                clusters.contains(offset), "seed \(seed): a chunk ends inside a grapheme cluster at scalar \(offset)")
        }
        #expect(chunks.allSatisfy { Chunker.tokenCount($0) <= 15 }, "seed \(seed)")
        // Valid UTF-8 both ways: every chunk survives encoding and decoding unchanged.
        #expect(chunks.allSatisfy { String(decoding: Array($0.utf8), as: UTF8.self) == $0 })
    }

    @Test func wordsGoOutInFivesToFifteensAtWordBoundaries() {
        var chunker = Chunker()
        let now = ContinuousClock.now
        var chunks: [String] = []
        for word in (1...40).map({ "w\($0) " }) { chunks += chunker.append(word, now: now) }
        chunks += chunker.finish()
        #expect(chunks.joined() == (1...40).map { "w\($0) " }.joined())
        // Without time passing, only the token rule cuts: 5 tokens each, the rest at the end.
        #expect(chunks.dropLast().allSatisfy { Chunker.tokenCount($0) == 5 && $0.hasSuffix(" ") })
        // A big delta is cut in chunks of at most 15 tokens; the last word waits until it is known
        // to be whole (the next text or the end).
        var big = Chunker()
        let many = (1...40).map { "x\($0) " }.joined()
        let bigChunks = big.append(many, now: now) + big.finish()
        #expect(bigChunks.map(Chunker.tokenCount) == [15, 15, 9, 1])
    }

    @Test func slowTextGoesOutAfterTheInterval() {
        var chunker = Chunker()
        let start = ContinuousClock.now
        #expect(chunker.append("Hel", now: start).isEmpty)
        #expect(chunker.tick(now: start.advanced(by: .milliseconds(40))).isEmpty)
        // After 75 ms what waited goes out, except the last character, which may still grow.
        #expect(chunker.tick(now: start.advanced(by: .milliseconds(80))) == ["He"])
        #expect(chunker.append("lo", now: start.advanced(by: .milliseconds(90))).isEmpty)
        #expect(chunker.finish() == ["llo"])
    }

    @Test func chineseCountsOneTokenPerIdeograph() {
        var chunker = Chunker()
        let now = ContinuousClock.now
        var chunks: [String] = []
        for character in "这是一个测试这是一个测试" { chunks += chunker.append(String(character), now: now) }
        chunks += chunker.finish()
        #expect(chunks == ["这是一个测", "试这是一个", "测试"])
    }
}

@Suite struct SSEParserTests {
    @Test(arguments: 0..<100)
    func eventsSurviveAnyByteSplit(seed: Int) throws {
        var rng = SplitMix64(state: UInt64(seed) &+ 1000)
        let contents = (0..<Int.random(in: 1...20, using: &rng)).map { _ in TextGenerator.text(using: &rng) }
        var body = ": keep-alive\n\n"
        for content in contents {
            let chunk = ["choices": [["index": 0, "delta": ["content": content]]]]
            let json = String(decoding: try JSONSerialization.data(withJSONObject: chunk), as: UTF8.self)
            body +=
                (Bool.random(using: &rng) ? "data: " : "data:") + json
                + (Bool.random(using: &rng) ? "\r\n\r\n" : "\n\n")
        }
        body += "data: [DONE]\n\n"
        let bytes = Array(body.utf8)
        var parser = SSEParser()
        var events: [String] = []
        var index = 0
        while index < bytes.count {
            let end = min(bytes.count, index + Int.random(in: 1...7, using: &rng))
            events += parser.feed(bytes[index..<end])
            index = end
        }
        #expect(events.last == "[DONE]")
        let decoded = try events.dropLast().map { event -> String in
            let object = try JSONSerialization.jsonObject(with: Data(event.utf8)) as! [String: Any]
            let choice = (object["choices"] as! [[String: Any]])[0]
            return (choice["delta"] as! [String: Any])["content"] as! String
        }
        #expect(decoded.map { Array($0.unicodeScalars) } == contents.map { Array($0.unicodeScalars) })
    }

    @Test func multiLineDataJoinsWithNewlines() {
        var parser = SSEParser()
        #expect(parser.feed(Array("event: x\ndata: a\ndata: b\nid: 1\n\n".utf8)) == ["a\nb"])
    }
}

@Suite struct CircuitBreakerTests {
    @Test func opensAfterTheThresholdAndRecoversThroughOneTrial() {
        var breaker = CircuitBreaker(failureThreshold: 3, openDuration: .seconds(10))
        let now = ContinuousClock.now
        for _ in 0..<2 {
            do { let allowed = breaker.allow(now: now); #expect(allowed) }
            breaker.recordFailure(now: now)
        }
        #expect(breaker.state == .closed(failures: 2))
        breaker.recordFailure(now: now)
        do { let allowed = breaker.allow(now: now.advanced(by: .seconds(5))); #expect(!allowed) }
        // After the open period one trial call goes out; a second waits for its outcome.
        do { let allowed = breaker.allow(now: now.advanced(by: .seconds(11))); #expect(allowed) }
        do { let allowed = breaker.allow(now: now.advanced(by: .seconds(11))); #expect(!allowed) }
        breaker.recordFailure(now: now.advanced(by: .seconds(11)))
        do { let allowed = breaker.allow(now: now.advanced(by: .seconds(12))); #expect(!allowed) }
        do { let allowed = breaker.allow(now: now.advanced(by: .seconds(22))); #expect(allowed) }
        breaker.recordSuccess()
        #expect(breaker.state == .closed(failures: 0))
        do { let allowed = breaker.allow(now: now.advanced(by: .seconds(22))); #expect(allowed) }
    }

    @Test func aSuccessResetsTheCount() {
        var breaker = CircuitBreaker(failureThreshold: 2)
        let now = ContinuousClock.now
        breaker.recordFailure(now: now)
        breaker.recordSuccess()
        breaker.recordFailure(now: now)
        do { let allowed = breaker.allow(now: now); #expect(allowed) }
    }

    /// Seed 001: `max_retries` 3, `retry_delay` 1, `backoff_factor` 2, delay = 1 · 2^retry_count after the count is raised.
    @Test func retriesFollowSeed001() {
        let policy = ResilientProvider.Policy()
        #expect(policy.maxRetries == 3)
        #expect((1...3).map(policy.delay(beforeRetry:)) == [.seconds(2), .seconds(4), .seconds(8)])
    }
}

@Suite struct OffsetWindowTests {
    @Test func theCommitPointOnlyPassesMessagesThatAreAllDone() {
        let window = OffsetWindow()
        for offset in Int64(10)...13 { window.begin(offset) }
        var stored: [Int64] = []
        // 11 and 12 finish before 10: nothing can be committed yet.
        window.finish(11) { stored.append($0) }
        window.finish(12) { stored.append($0) }
        #expect(stored.isEmpty)
        // 10 finishes: everything up to 13 (still running) is done.
        window.finish(10) { stored.append($0) }
        window.finish(13) { stored.append($0) }
        #expect(stored == [13, 14])
    }

    /// librdkafka keeps the offset stored last: tasks finishing at once must store their points in order.
    @Test func tasksFinishingAtOnceStoreTheirPointsInOrder() async {
        let window = OffsetWindow()
        let count: Int64 = 3000
        for offset in 0..<count { window.begin(offset) }
        let stored = Locked<[Int64]>([])
        await withTaskGroup(of: Void.self) { group in
            for offset in 0..<count {
                group.addTask {
                    window.finish(offset) { next in
                        usleep(20)  // as long as a store into librdkafka may take: wide enough for a race to show
                        stored.withLock { $0.append(next) }
                    }
                }
            }
        }
        let points = stored.withLock { $0 }
        #expect(points == points.sorted() && Set(points).count == points.count)
        #expect(points.last == count)
    }
}
