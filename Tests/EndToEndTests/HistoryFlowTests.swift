import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// Durable history through the real services: the notifier's persistence consumer writes what the
/// chat path produced, the gateway's REST reads it back, and it survives the whole stack's restart.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct HistoryFlowTests {
    struct HTTPAnswer: Sendable {
        var status: Int
        var json: JSONValue
    }

    static func http(_ method: String, _ url: String, token: String, body: String? = nil) async throws -> HTTPAnswer {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.timeoutInterval = 5
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = Data(body.utf8)
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let json = data.isEmpty ? JSONValue.null : ((try? JSONDecoder().decode(JSONValue.self, from: data)) ?? .null)
        return HTTPAnswer(status: (response as? HTTPURLResponse)?.statusCode ?? 0, json: json)
    }

    static func base(_ webSocketURL: String) -> String {
        webSocketURL.replacingOccurrences(of: "ws://", with: "http://").replacingOccurrences(of: "/ws", with: "")
    }

    static func send(_ id: String, _ conversation: String, _ content: String) -> ClientCommand {
        ClientCommand(
            id: id, type: ClientCommandType.sendMessage,
            data: ["conversationId": .string(conversation), "content": .string(content), "pattern": "direct"])
    }

    /// Waits until the conversation's history holds `count` messages; returns them (newest first).
    static func waitForMessages(_ base: String, _ conversation: String, token: String, count: Int) async throws
        -> [JSONValue]
    {
        let messages = Locked<[JSONValue]>([])
        _ = try await eventually(timeout: .seconds(30), every: .milliseconds(200)) {
            let answer = try await http("GET", "\(base)/api/v1/conversations/\(conversation)/messages", token: token)
            let items = answer.json["messages"]?.arrayValue ?? []
            messages.withLock { $0 = items }
            return items.count >= count && items.allSatisfy { $0["role"] == "user" || $0["status"] != .null }
        }
        return messages.withLock { $0 }
    }

    @Test func aConversationIsStoredAndSurvivesTheWholeStacksRestart() async throws {
        try await TestEnvironment.requirePostgres()
        let conversation = "hist-\(UUID().uuidString.prefix(8))"
        try await ServiceProcesses.withStack { _, url, authority in
            let token = try await authority.mint(user: "hanna")
            let (frames, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                client.send(Self.send("c1", conversation, "hello history"))
                return await client.frames.collect(idle: .seconds(30)) { $0.type == FrameType.collaborationComplete }
            }
            let reply = try #require(frames?.first { $0.type == FrameType.messageStreamEnd })
            let messages = try await Self.waitForMessages(Self.base(url), conversation, token: token, count: 2)
            #expect(messages.count == 2)
            #expect(messages.last?["role"] == "user" && messages.last?["content"] == "hello history")
            #expect(messages.first?["role"] == "assistant" && messages.first?["status"] == "completed")
            #expect(messages.first?["content"] == reply.data["finalMessage"]?["content"])

            // Someone else's conversation: 403 with a code, on every interface.
            let intruder = try await authority.mint(user: "mallory")
            for path in [
                "/api/v1/conversations/\(conversation)", "/api/v1/conversations/\(conversation)/messages",
                "/chat/session/\(conversation)", "/chat/message/history?chat_id=\(conversation)",
            ] {
                let answer = try await Self.http("GET", Self.base(url) + path, token: intruder)
                #expect(answer.status == 403, "\(path)")
                #expect(
                    answer.json["error"]?["code"] == "PERMISSION_DENIED" || answer.json["code"] == "PERMISSION_DENIED",
                    "\(path)")
            }
            #expect(
                try await Self.http("DELETE", Self.base(url) + "/api/v1/conversations/\(conversation)", token: intruder)
                    .status == 403)
        }
        // A new stack (new processes, same PostgreSQL): everything is still there.
        try await ServiceProcesses.withStack { _, url, authority in
            let token = try await authority.mint(user: "hanna")
            // History is written by a consumer group that rejoins after the restart: wait for it, briefly.
            let listed = Locked<[JSONValue]>([])
            _ = try await eventually(timeout: .seconds(15), every: .milliseconds(250)) {
                let list = try await Self.http(
                    "GET", Self.base(url) + "/api/v1/conversations?sort=created&limit=100", token: token)
                listed.withLock { $0 = list.json["conversations"]?.arrayValue ?? [] }
                return list.status == 200
                    && listed.withLock {
                        $0.contains { $0["id"]?.stringValue == conversation && $0["messageCount"] == 2 }
                    }
            }
            let conversations = listed.withLock { $0 }
            #expect(
                conversations.contains { $0["id"]?.stringValue == conversation && $0["messageCount"] == 2 },
                "\(conversations.filter { $0["id"]?.stringValue == conversation })")
            let history = try await Self.http(
                "GET", Self.base(url) + "/chat/message/history?chat_id=\(conversation)&page_size=1", token: token)
            #expect(history.status == 200 && history.json["status_code"] == 200)
            #expect(history.json["data"]?["has_more"] == true)
            #expect(history.json["data"]?["list"]?.arrayValue?.first?["is_bot"] == true)
            let cursor = try #require(history.json["data"]?["next_cursor"]?.stringValue)
            let older = try await Self.http(
                "GET", Self.base(url) + "/chat/message/history?chat_id=\(conversation)&page_size=1&cursor=\(cursor)",
                token: token)
            #expect(older.json["data"]?["list"]?.arrayValue?.first?["message"] == "hello history")
            #expect(older.json["data"]?["has_more"] == false)

            // A subscription with includeHistory: its ACK, then the stored history (oldest first).
            let (subscribed, _) = try await ChatClient.withConnection(url: url, token: token) {
                client -> [ServerFrame] in
                client.send(
                    ClientCommand(
                        id: "s1", type: ClientCommandType.subscribeConversation,
                        data: ["conversationId": .string(conversation), "includeHistory": true]))
                var frames: [ServerFrame] = []
                while let next = await client.frames.next(within: .seconds(5)) {
                    if next.frame.correlationId == "s1" { frames.append(next.frame) }
                    if frames.count == 2 { break }
                }
                return frames
            }
            #expect(subscribed?.map(\.type) == ["ACK", "CONVERSATION_HISTORY"])
            let replayed = subscribed?.last?.data["messages"]?.arrayValue ?? []
            #expect(replayed.map { $0["role"]?.stringValue ?? "" } == ["user", "assistant"])

            let renamed = try await Self.http(
                "PATCH", Self.base(url) + "/api/v1/conversations/\(conversation)", token: token,
                body: #"{"title": "Renamed"}"#)
            #expect(renamed.status == 200 && renamed.json["title"] == "Renamed")
            #expect(
                try await Self.http("DELETE", Self.base(url) + "/api/v1/conversations/\(conversation)", token: token)
                    .status == 204)
            #expect(
                try await Self.http("GET", Self.base(url) + "/api/v1/conversations/\(conversation)", token: token)
                    .status == 404)
        }
    }

    @Test func aTurnStoppedMidStreamIsStoredAsStoppedWithItsPartialText() async throws {
        try await TestEnvironment.requirePostgres()
        try await ServiceProcesses.withStack(tokensPerSecond: 10) { _, url, authority in
            let token = try await authority.mint(user: "stopper-h")
            let conversation = "hstop-\(UUID().uuidString.prefix(8))"
            let (frames, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                client.send(Self.send("m", conversation, "tell me a long story"))
                var frames: [ServerFrame] = []
                while let next = await client.frames.next(within: .seconds(20)) {
                    frames.append(next.frame)
                    if frames.filter({ $0.type == FrameType.messageStreamChunk }).count == 2 { break }
                }
                client.send(
                    ClientCommand(
                        id: "stop", type: ClientCommandType.interrupt, data: ["conversationId": .string(conversation)]))
                while let next = await client.frames.next(within: .seconds(20)) {
                    frames.append(next.frame)
                    if next.frame.type == FrameType.collaborationComplete { break }
                }
                return frames
            }
            let end = try #require(frames?.first { $0.type == FrameType.messageStreamEnd })
            let partial = try #require(end.data["finalMessage"]?["content"]?.stringValue)
            let messages = try await Self.waitForMessages(Self.base(url), conversation, token: token, count: 2)
            #expect(messages.first?["status"] == "stopped")
            #expect(messages.first?["content"]?.stringValue == partial)
            let session = try await Self.http("GET", Self.base(url) + "/chat/session/\(conversation)", token: token)
            #expect(session.json["data"]?["state"] == "interrupted")
        }
    }

    @Test func theRolesContextComesFromPostgreSQLWhenTheRedisRecordIsGone() async throws {
        try await TestEnvironment.requirePostgres()
        let fake = FakeOpenAI()
        try await fake.withServer { port in
            // Alex answers the direct pattern on a model that records what it was sent.
            let teamPath = try CollaborationFlowTests.teamFile(providers: [
                "Alex": ["kind": "openai", "baseURL": "http://127.0.0.1:\(port)/ok/v1", "model": "fake"]
            ])
            defer { try? FileManager.default.removeItem(atPath: teamPath) }
            try await ServiceProcesses.withStack(
                orchestratorEnvironment: ["SWITCHBOARD_TEAM_FILE": teamPath],
                agentEnvironment: ["SWITCHBOARD_AGENT_PROVIDERS": "http://127.0.0.1:\(port)/ok/v1"]
            ) { _, url, authority in
                let token = try await authority.mint(user: "context")
                let conversation = "hctx-\(UUID().uuidString.prefix(8))"
                func ask(_ id: String, _ content: String) async throws {
                    _ = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                        client.send(Self.send(id, conversation, content))
                        return await client.frames.collect(idle: .seconds(30)) {
                            $0.type == FrameType.collaborationComplete
                        }
                    }
                }
                try await ask("c1", "remember the blue tomato")
                _ = try await Self.waitForMessages(Self.base(url), conversation, token: token, count: 2)
                // The orchestrator's record (its cache of the history) expires or is lost.
                let redis = RedisClient(
                    configuration: .init(endpoint: TestEnvironment.redisEndpoint), logger: TestEnvironment.logger)
                try await redis.send("DEL", RedisArgument(Keyspace.Conversation.record(conversation)))
                await redis.close()
                try await ask("c2", "what did I ask you to remember?")
                let last = try #require(fake.bodies.withLock { $0.last })
                let request = try JSONDecoder().decode(JSONValue.self, from: Data(last.utf8))
                let contents = request["messages"]?.arrayValue?.compactMap { $0["content"]?.stringValue } ?? []
                // The earlier turn, read back from PostgreSQL, is in the model's context, in order.
                #expect(contents.contains("remember the blue tomato"))
                #expect(contents.contains(FakeOpenAI.deltas.joined()))
                #expect(contents.last?.contains("what did I ask you to remember?") == true)
            }
        }
    }

    /// `/readyz` of each service that reads or writes history includes PostgreSQL: ready with it, and
    /// not ready (503, `postgres: false`) when it cannot be reached.
    @Test func readinessIncludesPostgreSQLWhereItIsUsed() async throws {
        try await TestEnvironment.requireKafka()
        try await TestEnvironment.requireRedis()
        try await TestEnvironment.requirePostgres()
        try await Self.withServices { stack in
            var ports: [String: Int] = [:]
            for name in ["gateway", "orchestrator", "notifier", "workflow-runner"] {
                ports[name] = try stack.start(name).adminPort
            }
            try await stack.waitUntilReady()
            for (name, port) in ports {
                let answer = try await Self.http("GET", "http://127.0.0.1:\(port)/readyz", token: "-")
                #expect(answer.status == 200 && answer.json["checks"]?["postgres"] == true, "\(name): \(answer.json)")
            }
        }
        // The orchestrator starts without PostgreSQL (it only reads history on a cache miss), so its
        // probe is what tells that the database is out of reach. Alone: one member in its group at a time.
        try await Self.withServices { stack in
            let nowhere = "postgres://switchboard:switchboard@127.0.0.1:\(ServiceProcesses.freePort())/switchboard"
            let orphan = try stack.start("orchestrator", environment: ["SWITCHBOARD_POSTGRES_URL": nowhere]).adminPort
            let refused = Locked<HTTPAnswer?>(nil)
            _ = try await eventually(timeout: .seconds(60), every: .milliseconds(300)) {
                let answer = try? await Self.http("GET", "http://127.0.0.1:\(orphan)/readyz", token: "-")
                refused.withLock { $0 = answer }
                // Stopped only once in its consumer group: Tansu keeps a group waiting for a member
                // that leaves in the middle of joining, and the next tests' orchestrators with it.
                return answer?.json["checks"]?["postgres"] == false
                    && answer?.json["checks"]?["kafka-group:sb-orchestrator"] == true
            }
            let answer = try #require(refused.withLock { $0 })
            #expect(answer.status == 503 && answer.json["status"] == "not ready", "\(answer.json)")
            #expect(
                answer.json["checks"]?["postgres"] == false && answer.json["checks"]?["redis"] == true, "\(answer.json)"
            )
        }
    }

    /// Services started by `body`, stopped (SIGTERM) whatever happens.
    static func withServices(_ body: (ServiceProcesses) async throws -> Void) async throws {
        let stack = try ServiceProcesses()
        do {
            try await body(stack)
        } catch {
            await stack.stopAll()
            throw error
        }
        await stack.stopAll()
    }
}
