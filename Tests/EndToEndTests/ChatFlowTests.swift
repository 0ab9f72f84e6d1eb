import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The six services as separate processes over the real Kafka, Redis and PostgreSQL of the test run.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ChatFlowTests {
    @Test func aMessageGoesThroughEveryHopAndStreamsBack() async throws {
        try await ServiceProcesses.withStack { stack, url, authority in
            let token = try await authority.mint(user: "alice")
            let conversation = "conv-\(UUID().uuidString.prefix(8))"
            let (frames, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                client.send(
                    ClientCommand(
                        id: "c1", type: ClientCommandType.sendMessage,
                        data: ["conversationId": .string(conversation), "content": "hello switchboard"]))
                return await client.frames.collect(idle: .seconds(30)) { $0.type == FrameType.messageStreamEnd }
            }
            let all = try #require(frames)
            // The first frame answering the command (a SYSTEM_STATUS of the system channel may come earlier).
            let ack = try #require(all.first { $0.correlationId != nil })
            #expect(ack.type == "ACK" && ack.correlationId == "c1" && ack.status == .success)
            // The ack comes before any event of the reply.
            #expect(
                all.firstIndex { $0.correlationId != nil }! < all.firstIndex {
                    $0.type == FrameType.messageStreamStart
                }!)
            let messageID = try #require(ack.data["messageId"]?.stringValue)

            let start = try #require(all.first { $0.type == FrameType.messageStreamStart })
            let replyID = try #require(start.data["messageId"]?.stringValue)
            #expect(start.data["conversationId"]?.stringValue == conversation)
            #expect(start.data["inReplyTo"]?.stringValue == messageID)

            let chunks = all.filter { $0.type == FrameType.messageStreamChunk }
            #expect(chunks.count > 5)
            // Seed 000: a chunk's position is its character offset in the reply.
            #expect(
                chunks.map { $0.data["position"]?.intValue }
                    == RecoveryTests.characterOffsets(chunks.compactMap { $0.data["chunk"]?.stringValue }))
            #expect((start.data["estimatedLength"]?.intValue ?? 0) > 0, "the offline engine knows its answer's length")
            #expect(chunks.allSatisfy { $0.data["messageId"]?.stringValue == replyID })

            let end = try #require(all.last)
            #expect(end.type == FrameType.messageStreamEnd)
            let content = end.data["finalMessage"]?["content"]?.stringValue
            #expect(content == chunks.compactMap { $0.data["chunk"]?.stringValue }.joined())
            #expect(content?.contains("hello switchboard") == true)

            // Frames of the conversation carry consecutive channel offsets under one epoch; the reply is
            // one START, its chunks, one END among the collaboration's events.
            let streamed = all.filter { $0.channel == "conversation:\(conversation)" }
            #expect(streamed.allSatisfy { $0.offset != nil })
            #expect(streamed.filter { $0.type.hasPrefix("MESSAGE_STREAM_") }.count == chunks.count + 2)
            let offsets = streamed.compactMap(\.offset)
            #expect(offsets == Array(offsets[0]..<(offsets[0] + Int64(offsets.count))))
            #expect(Set(streamed.compactMap(\.epoch)).count == 1)
            _ = stack
        }
    }

    @Test func badTokensAreRefusedAndBadFramesAnsweredWithoutClosing() async throws {
        try await ServiceProcesses.withStack { _, url, authority in
            let httpURL = url.replacingOccurrences(of: "ws://", with: "http://")
            // Missing, forged and expired tokens: 401 before any upgrade.
            #expect(await Self.status(of: httpURL, bearer: nil) == 401)
            let forged = try await TokenAuthority(secret: "a-completely-different-secret-0123456789").mint(
                user: "alice")
            #expect(await Self.status(of: httpURL, bearer: forged) == 401)
            let expired = try await authority.mint(user: "alice", lifetime: .seconds(-10))
            #expect(await Self.status(of: httpURL + "?token=\(expired)", bearer: nil) == 401)
            await #expect(throws: (any Error).self) {
                try await ChatClient.withConnection(url: url, token: forged) { _ in true }
            }

            let alice = try await authority.mint(user: "alice")
            let bob = try await authority.mint(user: "bob")
            let conversation = "private-\(UUID().uuidString.prefix(8))"
            let (answers, _) = try await ChatClient.withConnection(url: url, token: alice) { client -> [ServerFrame] in
                var answers: [ServerFrame] = []
                func ask(_ raw: String) async {
                    client.sendRaw(raw)
                    if let frame = await client.frames.first(
                        within: .seconds(10), where: { $0.type == "ERROR" || $0.type == "ACK" || $0.type == "PONG" })
                    {
                        answers.append(frame.frame)
                    }
                }
                await ask("{not json")
                await ask(#"{"id":"u1","type":"LAUNCH_ROCKETS","timestamp":1,"data":{}}"#)
                await ask(
                    #"{"id":"s1","type":"SEND_MESSAGE","timestamp":1,"data":{"conversationId":"has space","content":"x"}}"#
                )
                await ask(
                    #"{"id":"s2","type":"SEND_MESSAGE","timestamp":1,"data":{"conversationId":"c","content":""}}"#)
                let long = String(repeating: "é", count: 10_001)
                await ask(
                    #"{"id":"s3","type":"SEND_MESSAGE","timestamp":1,"data":{"conversationId":"c","content":"\#(long)"}}"#
                )
                await ask(
                    #"{"id":"sub","type":"SUBSCRIBE_CONVERSATION","timestamp":1,"data":{"conversationId":"\#(conversation)"}}"#
                )
                await ask(#"{"id":"p1","type":"PING","timestamp":1,"data":{"timestamp":1000}}"#)
                return answers
            }
            let frames = try #require(answers)
            #expect(frames.map(\.type) == ["ERROR", "ERROR", "ERROR", "ERROR", "ERROR", "ACK", "PONG"])
            #expect(
                frames.map { $0.error?.code } == [
                    "BAD_FRAME", "UNKNOWN_TYPE", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "CONTENT_TOO_LONG", nil, nil,
                ])
            #expect(frames.map(\.correlationId) == [nil, "u1", "s1", "s2", "s3", "sub", "p1"])
            #expect(frames.last?.data["serverTime"]?.intValue != nil)

            // Bob may not follow or write to Alice's conversation.
            let denied = try await Self.followAndWrite(conversation, as: bob, url: url, content: "hi")
            #expect(denied == ["PERMISSION_DENIED", "PERMISSION_DENIED"])
        }
    }

    /// Subscribes to `conversation` and sends a message to it as the holder of `token`: the error codes
    /// of the two answers (nil where one was accepted).
    static func followAndWrite(_ conversation: String, as token: String, url: String, content: String)
        async throws -> [String?]
    {
        let (codes, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [String?] in
            client.send(
                ClientCommand(
                    id: "follow", type: ClientCommandType.subscribeConversation,
                    data: ["conversationId": .string(conversation)]))
            client.send(
                ClientCommand(
                    id: "write", type: ClientCommandType.sendMessage,
                    data: ["conversationId": .string(conversation), "content": .string(content)]))
            var codes: [String?] = []
            for _ in 0..<2 {
                codes.append(
                    await client.frames.first(within: .seconds(10), where: { $0.correlationId != nil })?.frame
                        .error?.code)
            }
            return codes
        }
        return codes ?? []
    }

    static func status(of url: String, bearer: String?) async -> Int? {
        await withCheckedContinuation { continuation in
            var request = URLRequest(url: URL(string: url)!)
            request.timeoutInterval = 5
            if let bearer { request.setValue("Bearer \(bearer)", forHTTPHeaderField: "Authorization") }
            URLSession.shared.dataTask(with: request) { _, response, _ in
                continuation.resume(returning: (response as? HTTPURLResponse)?.statusCode)
            }.resume()
        }
    }
}
