import Foundation
import SwitchboardContracts
import Testing

/// `JSONValueEncoder` gives what encoding to JSON text and reading it back as a `JSONValue` gives.
@Suite struct JSONValueEncoderTests {
    struct Everything: Codable {
        enum Mood: String, Codable { case calm, busy }
        struct Inner: Codable { var name: String; var tags: [String]; var score: Double? }

        var flag = true
        var text = "hé \"quoted\" / 你好 👨‍👩‍👧"
        var int = -42
        var int8: Int8 = -8
        var uint64 = UInt64.max
        var int64 = Int64(1_700_000_000_123_456)
        var float: Float = 0.1
        var double = 3.141592653589793
        var mood = Mood.busy
        var missing: String? = nil
        var present: Int? = 7
        var inner = Inner(name: "n", tags: ["a", "b"], score: nil)
        var list = [Inner(name: "x", tags: [], score: 1.5)]
        var byName = ["one": 1, "two": 2]
        var byNumber = [3: "three"]
        var nested: [[Int?]] = [[1, nil], []]
        var date = Date(timeIntervalSince1970: 1_700_000_000.5)
        var data = Data([0, 1, 2, 255])
        var url = URL(string: "https://example.com/a?b=c")!
        var decimal = Decimal(string: "12.34")!
        var any: JSONValue = ["k": [1, "two", nil, true]]
    }

    /// A type that writes its members into one object from two places, as the frames do.
    struct Flattened: Encodable {
        var ids = ReplyIDs(messageId: "m", conversationId: "c", role: "r", runId: "")
        var extra = ["more": 1]
        func encode(to encoder: any Encoder) throws {
            try ids.encode(to: encoder)
            try extra.encode(to: encoder)
        }
    }

    func viaText(_ value: some Encodable) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))
    }

    @Test func everyKindOfValueComesOutAsThroughText() throws {
        #expect(try JSONValueEncoder().encode(Everything()) == viaText(Everything()))
        #expect(try JSONValueEncoder().encode(Flattened()) == viaText(Flattened()))
        #expect(try JSONValueEncoder().encode([1.5, 2]) == viaText([1.5, 2]))
        #expect(try JSONValueEncoder().encode("alone") == "alone")
        #expect(try JSONValueEncoder().encode(Optional<Int>.none) == .null)
    }

    @Test func aNumberJSONCannotHoldIsRefused() {
        #expect(throws: EncodingError.self) { try JSONValueEncoder().encode(["x": Double.nan]) }
        #expect(throws: EncodingError.self) { try JSONValueEncoder().encode([Float.infinity]) }
    }
}
