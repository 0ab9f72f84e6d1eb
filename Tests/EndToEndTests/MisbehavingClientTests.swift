import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Clients that stop reading or send nonsense: they are answered or cut off, and nobody else notices.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct MisbehavingClientTests {
    @Test func aClientThatStopsReadingIsCutOffWhileAFastOneGetsEverything() async throws {
        try await ServiceProcesses.withStack(gatewayEnvironment: [
            "SWITCHBOARD_GATEWAY_OUTBOUND_LIMIT_BYTES": "65536",
            "SWITCHBOARD_GATEWAY_SOCKET_SEND_BUFFER_BYTES": "32768",
        ]) { stack, url, authority in
            let port = try #require(URL(string: url)?.port)
            let adminPort = try #require(stack.adminPort(of: "gateway"))
            let token = try await authority.mint(user: "olga")
            let conversation = "slow-\(UUID().uuidString.prefix(8))"
            let source = try await ConversationEventSource(
                brokers: TestEnvironment.kafkaBrokers, conversations: [conversation])
            let events = 600
            let (received, _) = try await ChatClient.withConnection(url: url, token: token) { fast -> [Int64] in
                fast.send(
                    ClientCommand(
                        id: "sub", type: ClientCommandType.subscribeConversation,
                        data: ["conversationId": .string(conversation)]))
                _ = await fast.frames.first(within: .seconds(10)) { $0.correlationId == "sub" }
                // The same user on a second device that stops reading after subscribing.
                let stalled = try StalledWebSocket(port: port, token: token)
                try stalled.sendText(
                    #"{"id":"sub","type":"SUBSCRIBE_CONVERSATION","timestamp":1,"data":{"conversationId":"\#(conversation)"}}"#
                )
                try await Task.sleep(for: .milliseconds(500))
                // 600 events of ~1 KB, far more than the 64 KiB outbound bound plus the socket buffers,
                // at a pace (about 250 KB/s) that a client that reads keeps up with even on a loaded
                // machine: its bound holds a quarter of a second of them.
                var last: DeliveryFuture?
                for index in 0..<events {
                    last = try await source.emit(into: 0, padding: 1000)
                    if index % 10 == 9 { try await Task.sleep(for: .milliseconds(40)) }
                }
                _ = try await last?.report()

                var offsets: [Int64] = []
                while offsets.count < events, let received = await fast.frames.next(within: .seconds(20)) {
                    if received.frame.channel == "conversation:\(conversation)", let offset = received.frame.offset {
                        offsets.append(offset)
                    }
                }
                let (bytes, closed) = stalled.drain(timeout: .seconds(20))
                #expect(closed, "the stalled connection is cut off")
                if let code = StalledWebSocket.closeCode(in: bytes) {
                    #expect(code == CloseCode.slowConsumer.rawValue)
                }
                return offsets
            }
            await source.shutdown()
            let offsets = try #require(received)
            #expect(
                offsets.count == events && offsets == Array(1...Int64(events)),
                "the fast reader gets every event once, in order: \(offsets.count) events, last \(offsets.last ?? 0)")
            let metrics = try await Self.text("http://127.0.0.1:\(adminPort)/metrics")
            #expect(Self.value(of: "sb_gateway_slow_disconnects_total", in: metrics) ?? 0 >= 1)
        }
    }

    /// Generated malformed frames (seeded, so a failure can be replayed): each gets exactly one
    /// answer, an ERROR with a code where the frame is not a valid command; the connection survives,
    /// and another user's chat on the same gateway goes on. An oversized frame closes only its own
    /// connection, with 1009.
    @Test func generatedMalformedFramesAreAnsweredAndDisturbNobody() async throws {
        try await ServiceProcesses.withStack(gatewayEnvironment: [
            "SWITCHBOARD_GATEWAY_COMMANDS_PER_SECOND": "1000", "SWITCHBOARD_GATEWAY_COMMAND_BURST": "1000",
        ]) { _, url, authority in
            let seed = UInt64.random(in: 1...UInt64.max)
            var generator = MalformedFrameGenerator(seed: seed)
            let cases = (0..<120).map { _ in generator.next() }
            let mallory = try await authority.mint(user: "mallory")
            let peggy = try await authority.mint(user: "peggy")

            async let bystander = ChatClient.withConnection(url: url, token: peggy) { client -> ServerFrame? in
                client.send(
                    ClientCommand(
                        id: "m", type: ClientCommandType.sendMessage,
                        data: [
                            "conversationId": .string("peggy-\(UUID().uuidString.prefix(6))"),
                            "content": "anyone there?",
                        ]))
                return await client.frames.first(within: .seconds(60)) { $0.type == FrameType.messageStreamEnd }?.frame
            }

            let (failures, closeCode) = try await ChatClient.withConnection(url: url, token: mallory) {
                client -> [String] in
                var failures: [String] = []
                for (index, malformed) in cases.enumerated() {
                    client.sendRaw(malformed.text)
                    client.send(
                        ClientCommand(id: "probe-\(index)", type: ClientCommandType.ping, data: ["timestamp": 1]))
                    var answers: [ServerFrame] = []
                    while let received = await client.frames.next(within: .seconds(10)) {
                        if received.frame.correlationId == "probe-\(index)" { break }
                        answers.append(received.frame)
                    }
                    let answer = answers.filter { $0.type == "ERROR" || $0.correlationId != nil }
                    if answer.count != 1 {
                        failures.append(
                            "case \(index) (\(malformed.kind)): \(answer.count) answers to \(malformed.text.prefix(80))"
                        )
                    } else if let expected = malformed.expectedCodes, !expected.contains(answer[0].error?.code ?? "") {
                        failures.append(
                            "case \(index) (\(malformed.kind)): \(answer[0].error?.code ?? answer[0].type), expected \(expected)"
                        )
                    }
                }
                return failures
            }
            #expect(closeCode == nil, "the connection survived every malformed frame (seed \(seed))")
            #expect(failures == [], "seed \(seed)")
            let end = try await bystander
            #expect(end.result??.data["finalMessage"]?["content"]?.stringValue?.contains("anyone there?") == true)

            // One frame over the 64 KiB cap: that connection alone is closed with 1009 (message too big).
            let (_, oversizedClose) = try await ChatClient.withConnection(url: url, token: mallory) { client in
                client.sendRaw(String(repeating: "x", count: 70_000))
                while await client.frames.next(within: .seconds(10)) != nil {}
                return true
            }
            #expect(oversizedClose == 1009)
        }
    }

    /// Sockets that never finish their request head are closed once the handshake deadline passes;
    /// an upgraded connection that then stays quiet is not.
    @Test func socketsThatNeverAuthenticateAreClosed() async throws {
        try await ServiceProcesses.withStack(gatewayEnvironment: ["SWITCHBOARD_GATEWAY_HANDSHAKE_TIMEOUT_SECONDS": "1"])
        {
            stack, url, authority in
            let port = try #require(URL(string: url)?.port)
            let adminPort = try #require(stack.adminPort(of: "gateway"))
            let silent = try StalledWebSocket(port: port)
            let trickling = try StalledWebSocket(port: port)
            try trickling.sendRaw("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            let token = try await authority.mint(user: "quentin")
            let (pong, _) = try await ChatClient.withConnection(url: url, token: token) { client -> String? in
                #expect(silent.drain(timeout: .seconds(5)).closed, "a silent socket is closed")
                #expect(trickling.drain(timeout: .seconds(5)).closed, "a socket that never ends its head is closed")
                // This connection has been quiet for longer than the deadline and is still served.
                client.send(ClientCommand(id: "p", type: ClientCommandType.ping, data: ["timestamp": 1]))
                return await client.frames.first(within: .seconds(5)) { $0.correlationId == "p" }?.frame.type
            }
            #expect(pong == "PONG")
            let metrics = try await Self.text("http://127.0.0.1:\(adminPort)/metrics")
            #expect(Self.value(of: "sb_gateway_handshake_timeouts_total", in: metrics) ?? 0 >= 2)
        }
    }

    static func text(_ url: String) async throws -> String {
        let (data, _) = try await URLSession.shared.data(from: URL(string: url)!)
        return String(decoding: data, as: UTF8.self)
    }

    /// The value of an unlabelled Prometheus sample.
    static func value(of name: String, in metrics: String) -> Double? {
        metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap {
            Double($0.split(separator: " ").last ?? "")
        }
    }
}

/// Frames that are not valid commands, in the shapes real clients get wrong.
struct MalformedFrameGenerator {
    struct Malformed {
        var kind: String
        var text: String
        /// The error codes that are right for it; nil when any single answer is right.
        var expectedCodes: Set<String>?
    }

    private var state: UInt64

    init(seed: UInt64) { state = seed }

    // SplitMix64: tiny, seedable, good enough to vary test inputs.
    private mutating func random() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }

    private mutating func number(below limit: Int) -> Int { Int(random() % UInt64(limit)) }

    private mutating func text(length: Int) -> String {
        let pools: [ClosedRange<UInt32>] = [0x20...0x7E, 0xA0...0x24F, 0x4E00...0x9FFF, 0x1F300...0x1FAFF, 0x0...0x1F]
        var scalars = String.UnicodeScalarView()
        for _ in 0..<length {
            let pool = pools[number(below: pools.count)]
            let value = pool.lowerBound + UInt32(number(below: Int(pool.upperBound - pool.lowerBound + 1)))
            if let scalar = Unicode.Scalar(value) { scalars.append(scalar) }
        }
        return String(scalars)
    }

    private static let valid =
        #"{"id":"v1","type":"SEND_MESSAGE","timestamp":1700000000000,"data":{"conversationId":"c1","content":"hello"}}"#

    mutating func next() -> Malformed {
        let badFrame: Set<String> = [ErrorCode.badFrame.rawValue]
        switch number(below: 7) {
        case 0:
            return Malformed(kind: "noise", text: "~" + text(length: 1 + number(below: 200)), expectedCodes: badFrame)
        case 1:
            let cut = 1 + number(below: Self.valid.count - 2)
            return Malformed(kind: "truncated", text: String(Self.valid.prefix(cut)), expectedCodes: badFrame)
        case 2:
            let shapes = ["[]", "[1,2,3]", "42", "-0.5e300", "\"SEND_MESSAGE\"", "null", "true", "{}", "{\"id\":null}"]
            return Malformed(kind: "wrong shape", text: shapes[number(below: shapes.count)], expectedCodes: badFrame)
        case 3:
            let fields = [
                #"{"id":7,"type":"PING","data":{}}"#, #"{"id":"x","type":12,"data":{}}"#,
                #"{"id":"x","type":"SEND_MESSAGE","data":"text"}"#,
                #"{"id":"x","type":"SEND_MESSAGE","data":{"conversationId":5,"content":"a"}}"#,
                #"{"id":"x","type":"SUBSCRIBE_CONVERSATION","data":{"conversationId":"c","offset":"ten","epoch":3}}"#,
                #"{"id":"x","type":"SEND_MESSAGE","data":{"conversationId":"has space \#(text(length: 5))","content":"a"}}"#,
            ]
            return Malformed(
                kind: "wrong field types", text: fields[number(below: fields.count)],
                expectedCodes: [ErrorCode.badFrame.rawValue, ErrorCode.invalidArgument.rawValue])
        case 4:
            let name = String(
                (0..<(1 + number(below: 20))).map { _ in Character(Unicode.Scalar(UInt8(65 + number(below: 26)))) })
            return Malformed(
                kind: "unknown type", text: #"{"id":"u","type":"X_\#(name)","timestamp":1,"data":{}}"#,
                expectedCodes: [ErrorCode.unknownType.rawValue])
        case 5:
            let depth = 1 + number(below: 3000)
            let nested = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
            return Malformed(
                kind: "deep nesting", text: #"{"id":"d","type":"X_NESTED","data":{"a":\#(nested)}}"#,
                expectedCodes: [ErrorCode.badFrame.rawValue, ErrorCode.unknownType.rawValue])
        default:
            var bytes = Array(Self.valid.utf8)
            for _ in 0..<(1 + number(below: 4)) {
                bytes[number(below: bytes.count)] =
                    [UInt8(ascii: "\""), UInt8(ascii: "}"), UInt8(ascii: ":"), UInt8(ascii: ",")][number(below: 4)]
            }
            // A corrupted frame may still parse (then it must be answered once, by whatever it became).
            return Malformed(kind: "corrupted", text: String(decoding: bytes, as: UTF8.self), expectedCodes: nil)
        }
    }
}
