import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// A client that drops (or whose gateway dies) in the middle of a stream resumes by offset and ends
/// with every event exactly once.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct RecoveryTests {
    static func send(_ conversation: String, _ content: String) -> ClientCommand {
        ClientCommand(
            id: "send-\(UUID().uuidString.prefix(6))", type: ClientCommandType.sendMessage,
            data: ["conversationId": .string(conversation), "content": .string(content)])
    }

    static func resume(_ conversation: String, from frame: ServerFrame?) -> ClientCommand {
        var data: [String: JSONValue] = ["conversationId": .string(conversation)]
        if let frame, let offset = frame.offset, let epoch = frame.epoch {
            data["offset"] = .number(Double(offset))
            data["epoch"] = .string(epoch)
        }
        return ClientCommand(id: "resume", type: ClientCommandType.subscribeConversation, data: .object(data))
    }

    /// Checks that the channel frames seen across connections are one contiguous, duplicate-free run
    /// holding one whole reply.
    static func expectCompleteStream(_ frames: [ServerFrame], sourceLocation: SourceLocation = #_sourceLocation) {
        // The conversation's events only (every connection also hears its user and the system channel).
        let positioned = frames.filter { $0.offset != nil && $0.channel?.hasPrefix("conversation:") == true }
        let offsets = positioned.compactMap(\.offset)
        #expect(!offsets.isEmpty, sourceLocation: sourceLocation)
        #expect(
            offsets == Array(offsets[0]..<(offsets[0] + Int64(offsets.count))), "offsets \(offsets)",
            sourceLocation: sourceLocation)
        #expect(Set(positioned.compactMap(\.epoch)).count == 1, sourceLocation: sourceLocation)
        // The reply among the collaboration's events: START first, END last.
        let reply = positioned.filter { $0.type.hasPrefix("MESSAGE_STREAM_") }
        #expect(reply.first?.type == FrameType.messageStreamStart, sourceLocation: sourceLocation)
        #expect(reply.last?.type == FrameType.messageStreamEnd, sourceLocation: sourceLocation)
        let chunks = positioned.filter { $0.type == FrameType.messageStreamChunk }
        let texts = chunks.compactMap { $0.data["chunk"]?.stringValue }
        #expect(
            chunks.map { $0.data["position"]?.intValue } == Self.characterOffsets(texts), sourceLocation: sourceLocation
        )
        #expect(
            reply.last?.data["finalMessage"]?["content"]?.stringValue == texts.joined(), sourceLocation: sourceLocation)
    }

    /// Seed 000's chunk positions: each chunk's character offset in the reply (0, then the first's length…).
    static func characterOffsets(_ chunks: [String]) -> [Int?] {
        var offset = 0
        return chunks.map { chunk in
            defer { offset += ChatCentreDialect.length(chunk) }
            return offset
        }
    }

    /// The same check over seed 000's SSE events: ids are consecutive positions of one epoch; the reply
    /// is `message_start`, `message_chunk {chunk, position, total: -1}`s, `message_complete {message, metadata}`.
    static func expectCompleteSSEStream(_ events: [SSEClient.Event], sourceLocation: SourceLocation = #_sourceLocation)
    {
        let numbered = events.filter { $0.id != nil }
        let positions = numbered.compactMap { $0.id.flatMap(StreamPosition.init(lastEventID:)) }
        #expect(positions.count == numbered.count && !positions.isEmpty, sourceLocation: sourceLocation)
        let offsets = positions.map(\.offset)
        #expect(
            offsets == Array((offsets.first ?? 0)..<((offsets.first ?? 0) + Int64(offsets.count))),
            "offsets \(offsets)", sourceLocation: sourceLocation)
        #expect(Set(positions.map(\.epoch)).count == 1, sourceLocation: sourceLocation)
        #expect(numbered.allSatisfy { $0.event == $0.event?.lowercased() }, sourceLocation: sourceLocation)
        let reply = numbered.filter { ["message_start", "message_chunk", "message_complete"].contains($0.event ?? "") }
        #expect(reply.first?.event == "message_start", sourceLocation: sourceLocation)
        #expect(reply.last?.event == "message_complete", sourceLocation: sourceLocation)
        let chunks = reply.filter { $0.event == "message_chunk" }.compactMap { FrontDoorTests.decode($0.data) }
        let texts = chunks.compactMap { $0["chunk"]?.stringValue }
        #expect(texts.count == chunks.count && !texts.isEmpty, sourceLocation: sourceLocation)
        #expect(chunks.map { $0["position"]?.intValue } == Self.characterOffsets(texts), sourceLocation: sourceLocation)
        #expect(chunks.allSatisfy { $0["total"] == -1 }, sourceLocation: sourceLocation)
        let complete = reply.last.flatMap { FrontDoorTests.decode($0.data) }
        #expect(complete?["message"]?.stringValue == texts.joined(), sourceLocation: sourceLocation)
        #expect(complete?["metadata"]?.objectValue != nil, sourceLocation: sourceLocation)
    }

    /// Sends `content` to `conversation`, reads until the reply's fifth chunk and drops the connection,
    /// as a client that goes away mid-stream does; the frames it saw.
    static func sendAndLeave(url: String, token: String, _ conversation: String, _ content: String) async throws
        -> [ServerFrame]
    {
        let (before, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
            client.send(Self.send(conversation, content))
            var frames: [ServerFrame] = []
            while let received = await client.frames.next(within: .seconds(20)) {
                frames.append(received.frame)
                if frames.filter({ $0.type == FrameType.messageStreamChunk }).count == 5 { break }
            }
            return frames
        }
        return try #require(before)
    }

    @Test func aClientThatDropsMidStreamResumesWithNothingMissingOrRepeated() async throws {
        try await ServiceProcesses.withStack(tokensPerSecond: 40) { _, url, authority in
            let token = try await authority.mint(user: "carol")
            let conversation = "resume-\(UUID().uuidString.prefix(8))"
            let first = try await Self.sendAndLeave(
                url: url, token: token, conversation, "tell me about resumable streams")
            #expect(first.filter { $0.type == FrameType.messageStreamChunk }.count == 5)
            // Away for a while: the reply goes on without us.
            try await Task.sleep(for: .milliseconds(400))
            let (after, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                client.send(
                    Self.resume(conversation, from: first.last { $0.channel == "conversation:\(conversation)" }))
                return await client.frames.collect(idle: .seconds(20)) { $0.type == FrameType.messageStreamEnd }
            }
            let second = try #require(after)
            let ack = try #require(second.first { $0.correlationId == "resume" })
            #expect(ack.type == "ACK" && ack.data["recovered"]?.boolValue == true)
            // The answer comes first, then what was missed.
            let ackIndex = try #require(second.firstIndex { $0.correlationId == "resume" })
            let firstReplayed = try #require(
                second.firstIndex { $0.channel == "conversation:\(conversation)" && $0.offset != nil })
            #expect(ackIndex < firstReplayed)
            Self.expectCompleteStream(first + second)
        }
    }

    @Test func aClientWhoseGatewayIsKilledFinishesOnAnotherGateway() async throws {
        try await ServiceProcesses.withStack(tokensPerSecond: 40) { stack, url, authority in
            let spare = try stack.start("gateway")
            try await stack.waitUntilReady()
            let firstGatewayPort = try #require(URL(string: url)?.port)
            let token = try await authority.mint(user: "dave")
            let conversation = "failover-\(UUID().uuidString.prefix(8))"
            let seen = Locked<[ServerFrame]>([])
            do {
                try await ChatClient.withConnection(url: url, token: token) { client in
                    client.send(Self.send(conversation, "what happens when a gateway dies"))
                    while let received = await client.frames.next(within: .seconds(20)) {
                        let chunks = seen.withLock { frames in
                            frames.append(received.frame)
                            return frames.filter { $0.type == FrameType.messageStreamChunk }.count
                        }
                        if chunks == 4 { stack.kill(httpPort: firstGatewayPort) }
                    }
                    return true
                }
            } catch {
                // The connection died with its gateway, as it would for a real client.
            }
            let before = seen.withLock { $0 }
            #expect(before.filter { $0.type == FrameType.messageStreamChunk }.count >= 4)
            #expect(!before.contains { $0.type == FrameType.messageStreamEnd })
            let (after, _) = try await ChatClient.withConnection(
                url: "ws://127.0.0.1:\(spare.httpPort)/ws", token: token
            ) {
                client -> [ServerFrame] in
                client.send(
                    Self.resume(conversation, from: before.last { $0.channel == "conversation:\(conversation)" }))
                return await client.frames.collect(idle: .seconds(20)) { $0.type == FrameType.messageStreamEnd }
            }
            let second = try #require(after)
            #expect(second.first { $0.correlationId == "resume" }?.data["recovered"]?.boolValue == true)
            Self.expectCompleteStream(before + second)
        }
    }

    @Test func aPositionFromAnotherEpochOrBeyondTheChannelIsNotRecovered() async throws {
        try await ServiceProcesses.withStack { _, url, authority in
            let token = try await authority.mint(user: "erin")
            let conversation = "epoch-\(UUID().uuidString.prefix(8))"
            let (answers, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                client.send(Self.send(conversation, "hello"))
                _ = await client.frames.first(within: .seconds(20)) { $0.type == FrameType.messageStreamEnd }
                var answers: [ServerFrame] = []
                for data: JSONValue in [
                    ["conversationId": .string(conversation), "offset": 2, "epoch": "not-the-epoch"],
                    ["conversationId": .string(conversation), "offset": 100_000, "epoch": "not-the-epoch"],
                    ["conversationId": .string(conversation), "offset": -1, "epoch": "x"],
                ] {
                    client.send(ClientCommand(id: "r", type: ClientCommandType.subscribeConversation, data: data))
                    if let answer = await client.frames.first(within: .seconds(10), where: { $0.correlationId == "r" })
                    {
                        answers.append(answer.frame)
                    }
                }
                return answers
            }
            let frames = try #require(answers)
            #expect(frames.count == 3)
            #expect(frames[0].data["recovered"]?.boolValue == false && frames[0].data["offset"]?.intValue != nil)
            #expect(frames[1].data["recovered"]?.boolValue == false)
            #expect(frames[2].error?.code == "INVALID_ARGUMENT")
        }
    }

    @Test func serverSentEventsResumeFromLastEventID() async throws {
        try await ServiceProcesses.withStack(tokensPerSecond: 40) { _, url, authority in
            let port = URL(string: url)!.port!
            let token = try await authority.mint(user: "frank")
            let conversation = "sse-\(UUID().uuidString.prefix(8))"
            let path = "/api/v1/conversations/\(conversation)/messages/stream"

            // Forbidden and unauthenticated streams are refused.
            let anonymous = try await SSEClient.connect(port: port, path: path)
            #expect(await eventually(timeout: .seconds(5)) { anonymous.head != nil })
            #expect(anonymous.head?.hasPrefix("HTTP/1.1 401") == true)
            await anonymous.close()

            let first = try await SSEClient.connect(
                port: port, path: path, headers: ["Authorization": "Bearer \(token)"])
            #expect(await eventually(timeout: .seconds(5)) { first.head != nil })
            let head = try #require(first.head).lowercased()
            #expect(head.hasPrefix("http/1.1 200") && head.contains("text/event-stream") && head.contains("no-cache"))
            #expect(head.contains("x-accel-buffering: no"))

            // Send over REST: 202 with the message id.
            var request = URLRequest(
                url: URL(string: "http://127.0.0.1:\(port)/api/v1/conversations/\(conversation)/messages")!)
            request.httpMethod = "POST"
            request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = Data(#"{"content":"stream this over SSE please"}"#.utf8)
            let (body, response) = try await URLSession.shared.data(for: request)
            #expect((response as? HTTPURLResponse)?.statusCode == 202)
            #expect(String(decoding: body, as: UTF8.self).contains("messageId"))

            #expect(
                await eventually(timeout: .seconds(20)) {
                    first.events.filter { $0.event == "message_chunk" }.count >= 5
                })
            await first.close()
            let firstEvents = first.events.filter { $0.id != nil }
            let lastID = try #require(firstEvents.last?.id, "events: \(first.events.prefix(4))")

            let second = try await SSEClient.connect(
                port: port, path: path + "?lastEventId=\(lastID)", headers: ["Authorization": "Bearer \(token)"])
            #expect(
                await eventually(timeout: .seconds(20)) { second.events.contains { $0.event == "message_complete" } })
            await second.close()
            let recovery = try #require(second.events.first)
            #expect(recovery.event == "recovery" && recovery.data.contains("\"recovered\":true"))
            // Seed 000's events across the two streams: one run of positions, nothing missed or repeated.
            Self.expectCompleteSSEStream(firstEvents + second.events.filter { $0.id != nil })
        }
    }

    @Test func serverSentEventsAreGzippedWhenTheClientAsks() async throws {
        try await ServiceProcesses.withStack(tokensPerSecond: 100) { _, url, authority in
            let port = URL(string: url)!.port!
            let token = try await authority.mint(user: "hana")
            let conversation = "gzip-\(UUID().uuidString.prefix(8))"
            let stream = try await SSEClient.connect(
                port: port, path: "/api/v1/conversations/\(conversation)/messages/stream?token=\(token)",
                headers: ["Accept-Encoding": "gzip, deflate"])
            #expect(await eventually(timeout: .seconds(5)) { stream.head != nil })
            #expect(stream.head?.lowercased().contains("content-encoding: gzip") == true)
            try await ChatClient.withConnection(url: url, token: token) { client in
                client.send(Self.send(conversation, "compress the stream, not the latency"))
                _ = await client.frames.first(within: .seconds(20)) { $0.type == FrameType.messageStreamEnd }
            }
            // Every event arrives whole and at once: each write is flushed through the compressor.
            #expect(
                await eventually(timeout: .seconds(10)) { stream.events.contains { $0.event == "message_complete" } })
            Self.expectCompleteSSEStream(stream.events)
            await stream.close()
        }
    }

    @Test func typingIsShownToOthersLiveAndNeverReplayed() async throws {
        try await ServiceProcesses.withStack { _, url, authority in
            let token = try await authority.mint(user: "gina")
            let conversation = "typing-\(UUID().uuidString.prefix(8))"
            let (frames, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                client.send(
                    ClientCommand(
                        id: "t0", type: ClientCommandType.typingStart, data: ["conversationId": .string(conversation)]))
                let refused = await client.frames.first(within: .seconds(10)) { $0.correlationId == "t0" }
                client.send(
                    ClientCommand(
                        id: "s", type: ClientCommandType.subscribeConversation,
                        data: ["conversationId": .string(conversation)]))
                _ = await client.frames.first(within: .seconds(10)) { $0.correlationId == "s" }
                client.send(
                    ClientCommand(
                        id: "t1", type: ClientCommandType.typingStart, data: ["conversationId": .string(conversation)]))
                let ack = await client.frames.first(within: .seconds(10)) { $0.correlationId == "t1" }
                let typing = await client.frames.first(within: .seconds(10)) { $0.type == "TYPING_START" }
                return [refused?.frame, ack?.frame, typing?.frame].compactMap { $0 }
            }
            let answers = try #require(frames)
            #expect(answers.count == 3)
            #expect(answers[0].error?.code == "INVALID_ARGUMENT")
            #expect(answers[1].type == "ACK")
            #expect(answers[2].data["userId"]?.stringValue == "gina" && answers[2].offset == nil)
        }
    }

    @Test func presenceIsShownLiveWhenConnectionsJoinAndLeave() async throws {
        try await ServiceProcesses.withStack { _, url, authority in
            let token = try await authority.mint(user: "ines")
            let conversation = "presence-\(UUID().uuidString.prefix(8))"
            let subscribe = ClientCommand(
                id: "s", type: ClientCommandType.subscribeConversation, data: ["conversationId": .string(conversation)])
            let (seen, _) = try await ChatClient.withConnection(url: url, token: token) { watcher -> [ServerFrame] in
                watcher.send(subscribe)
                _ = await watcher.frames.first(within: .seconds(10)) { $0.correlationId == "s" }
                // A second device joins, leaves by unsubscribing, joins again and disconnects.
                try await ChatClient.withConnection(url: url, token: token) { device in
                    device.send(subscribe)
                    _ = await device.frames.first(within: .seconds(10)) { $0.correlationId == "s" }
                    device.send(
                        ClientCommand(
                            id: "u", type: ClientCommandType.unsubscribeConversation,
                            data: ["conversationId": .string(conversation)]))
                    _ = await device.frames.first(within: .seconds(10)) { $0.correlationId == "u" }
                    device.send(
                        ClientCommand(
                            id: "s2", type: ClientCommandType.subscribeConversation,
                            data: ["conversationId": .string(conversation)]))
                    _ = await device.frames.first(within: .seconds(10)) { $0.correlationId == "s2" }
                }
                // Its own join, then the device's four.
                var presence: [ServerFrame] = []
                while presence.count < 5, let received = await watcher.frames.next(within: .seconds(10)) {
                    if received.frame.type.hasPrefix("PRESENCE_") { presence.append(received.frame) }
                }
                return presence
            }
            let all = try #require(seen)
            let watcherConnection = all.first?.data["connectionId"]?.stringValue
            let presence = all.filter { $0.data["connectionId"]?.stringValue != watcherConnection }
            #expect(
                presence.map(\.type) == [
                    FrameType.presenceJoin, FrameType.presenceLeave, FrameType.presenceJoin, FrameType.presenceLeave,
                ])
            #expect(presence.allSatisfy { $0.data["userId"]?.stringValue == "ines" && $0.offset == nil })
            // Ephemeral: a client resuming the conversation from its start is not shown them again.
            let (replayed, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                client.send(subscribe)
                return await client.frames.collect(idle: .seconds(2)) { _ in false }
            }
            let device = presence.first?.data["connectionId"]?.stringValue
            #expect(try #require(replayed).filter { $0.data["connectionId"]?.stringValue == device }.isEmpty)
        }
    }

    @Test func aGatewayShuttingDownTellsItsClientsToReconnect() async throws {
        try await ServiceProcesses.withStack { stack, url, authority in
            let token = try await authority.mint(user: "hana")
            let (_, close) = try await ChatClient.withConnection(url: url, token: token) { client in
                client.send(ClientCommand(id: "p", type: ClientCommandType.ping, data: ["timestamp": 1]))
                _ = await client.frames.first(within: .seconds(10)) { $0.type == "PONG" }
                let port = try #require(URL(string: url)?.port)
                // The gateway drains until its clients have gone (5 s at most): a client that does not
                // answer the shutdown code keeps the drain long enough to look at it. Without one, this
                // client's quick goodbye ended it before the plain GET below, now and then.
                let slowToLeave = try StalledWebSocket(port: port, token: token)
                defer { withExtendedLifetime(slowToLeave) {} }
                stack.process(named: "gateway")?.terminate()
                // While it drains, the gateway refuses new connections, so no client lands on it after
                // the shutdown codes went out (a refused upgrade is always a bare 400, the WebSocket
                // library's answer; the same request without the upgrade shows the reason, 503).
                var refusal = ""
                // The shutdown code may close this client (cancelling its task) before the gateway's
                // refusal is seen: only the connection attempts' own errors count, and the waits
                // between them must not end the loop.
                let deadline = ContinuousClock.now + .seconds(5)
                while refusal.isEmpty, ContinuousClock.now < deadline {
                    do {
                        _ = try StalledWebSocket(port: port, token: token)
                    } catch {
                        refusal = "\(error)"
                    }
                    try? await Task.sleep(for: .milliseconds(20))
                }
                #expect(refusal.hasPrefix("upgrade refused"), "\(refusal)")
                let plainStatus = await ServiceProcesses.httpStatus("http://127.0.0.1:\(port)/ws?token=\(token)")
                #expect(plainStatus == 503, "a plain GET while draining answered \(String(describing: plainStatus))")
                // Wait for the server to close the connection.
                while await client.frames.next(within: .seconds(15)) != nil {}
                return true
            }
            #expect(close == CloseCode.shutdown.rawValue)
            #expect(CloseCode.shutdown.shouldReconnect)
        }
    }
}
