import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// Multi-agent runs through the real services: the orchestrator plans, agent-workers stream the roles,
/// the client sees the collaboration's events in order with only legal role transitions.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct CollaborationFlowTests {
    /// Sends a message with `pattern` and collects every frame until COLLABORATION_COMPLETE.
    static func converse(
        url: String, authority: TokenAuthority, pattern: String, content: String = "how should we launch Switchboard?"
    ) async throws -> (conversation: String, frames: [FrameInbox.Received]) {
        let token = try await authority.mint(user: "team-\(UUID().uuidString.prefix(6))")
        let conversation = "collab-\(UUID().uuidString.prefix(8))"
        let (received, _) = try await ChatClient.withConnection(url: url, token: token) {
            client -> [FrameInbox.Received] in
            client.send(
                ClientCommand(
                    id: "c1", type: ClientCommandType.sendMessage,
                    data: [
                        "conversationId": .string(conversation), "content": .string(content),
                        "pattern": .string(pattern),
                    ]))
            var frames: [FrameInbox.Received] = []
            while let next = await client.frames.next(within: .seconds(30)) {
                frames.append(next)
                if next.frame.type == FrameType.collaborationComplete { break }
            }
            return frames
        }
        let frames = try #require(received).filter { $0.frame.channel == "conversation:\(conversation)" }
        return (conversation, frames)
    }

    /// Each role's ROLE_STATUS_CHANGEs chain from IDLE, every step legal under seed 000's machine.
    static func expectLegalTransitions(_ frames: [ServerFrame], sourceLocation: SourceLocation = #_sourceLocation)
        -> [String: [String]]
    {
        var paths: [String: [String]] = [:]
        for frame in frames where frame.type == FrameType.roleStatusChange {
            let role = frame.data["role"]?.stringValue ?? "?"
            let from = RoleStatus(rawValue: frame.data["previousStatus"]?.stringValue ?? "")
            let to = RoleStatus(rawValue: frame.data["status"]?.stringValue ?? "")
            #expect(from != nil && to != nil, sourceLocation: sourceLocation)
            guard let from, let to else { continue }
            #expect(
                RoleStateMachine.canTransition(from: from, to: to), "\(role): \(from) → \(to)",
                sourceLocation: sourceLocation)
            #expect(
                (paths[role]?.last ?? "IDLE") == from.rawValue, "\(role) jumped from \(paths[role] ?? [])",
                sourceLocation: sourceLocation)
            paths[role, default: ["IDLE"]].append(to.rawValue)
        }
        return paths
    }

    static func instants(_ frames: [FrameInbox.Received], _ type: String, role: String) -> [ContinuousClock.Instant] {
        frames.filter { $0.frame.type == type && $0.frame.data["role"]?.stringValue == role }.map(\.receivedAt)
    }

    @Test func sequentialRunsTheRolesInOrderWithLegalTransitions() async throws {
        try await ServiceProcesses.withStack { _, url, authority in
            let (conversation, received) = try await Self.converse(
                url: url, authority: authority, pattern: "sequential")
            let frames = received.map(\.frame)
            let order = ["Alex", "Kulu", "Mike", "David", "Catherine"]
            let start = try #require(frames.first { $0.type == FrameType.collaborationStart })
            #expect(start.data["pattern"] == "sequential")
            #expect(start.data["roles"] == .array(order.map { .string($0) }))
            #expect(frames.filter { $0.type == FrameType.roleAssigned }.count == 5)

            // One role after another: each starts after the one before completed.
            #expect(
                frames.filter { $0.type == FrameType.agentStart }.compactMap { $0.data["agent_source"]?.stringValue }
                    == order)
            let events = frames.filter { $0.type == FrameType.agentStart || $0.type == FrameType.agentComplete }
            #expect(
                events.map(\.type)
                    == Array(repeating: [FrameType.agentStart, FrameType.agentComplete], count: 5).flatMap { $0 })
            #expect(
                frames.filter { $0.type == FrameType.agentChunk }.allSatisfy {
                    $0.data["event_type"] == "llm_chunk" && $0.data["payload"]?["content"] != nil
                })

            let paths = Self.expectLegalTransitions(frames)
            #expect(paths["Alex"] == ["IDLE", "ANALYZING", "THINKING", "RESPONDING", "IDLE"])
            for role in order.dropFirst() {
                #expect(
                    paths[role] == ["IDLE", "ANALYZING", "COLLABORATING", "THINKING", "RESPONDING", "IDLE"], "\(role)")
            }
            #expect(frames.filter { $0.type == FrameType.roleThinkingStart }.count == 5)
            #expect(
                frames.filter { $0.type == FrameType.roleThinkingEnd }.allSatisfy {
                    $0.data["actualTime"]?.intValue != nil
                })

            // The reply is Catherine's, once.
            let replyFrames = frames.filter { $0.type.hasPrefix("MESSAGE_STREAM_") }
            #expect(
                replyFrames.first?.type == FrameType.messageStreamStart
                    && replyFrames.last?.type == FrameType.messageStreamEnd)
            #expect(
                replyFrames.allSatisfy {
                    $0.data["role"]?.stringValue == "Catherine" || $0.type == FrameType.messageStreamEnd
                })
            let end = try #require(replyFrames.last)
            #expect(end.data["finalMessage"]?["role"] == "Catherine")
            let content = end.data["finalMessage"]?["content"]?.stringValue ?? ""
            #expect(content.contains("I build on the work of Alex, Kulu, Mike, David"))

            let progress = frames.filter { $0.type == FrameType.collaborationProgress }.compactMap {
                $0.data["progress"]?.intValue
            }
            #expect(progress == progress.sorted() && progress.last == 100)
            let complete = try #require(frames.last)
            #expect(complete.type == FrameType.collaborationComplete)
            #expect(complete.data["result"]?["status"] == "completed")
            #expect(complete.data["result"]?["answer"]?.stringValue == content)
            #expect(complete.data["contributions"]?.arrayValue?.compactMap { $0["role"]?.stringValue } == order)

            // The roles' current states are in Redis for clients that join later: all IDLE again.
            let redis = RedisClient(
                configuration: .init(endpoint: TestEnvironment.redisEndpoint), logger: TestEnvironment.logger)
            let states = try await RoleStateStore(redis: redis, logger: TestEnvironment.logger).states(
                conversation: conversation)
            await redis.close()
            #expect(states == Dictionary(uniqueKeysWithValues: order.map { ($0, RoleStatus.idle) }))
        }
    }

    @Test func parallelRolesReallyOverlap() async throws {
        // Slow enough that four answers one after another would take seconds.
        try await ServiceProcesses.withStack(tokensPerSecond: 40) { _, url, authority in
            let (_, received) = try await Self.converse(url: url, authority: authority, pattern: "parallel")
            let frames = received.map(\.frame)
            _ = Self.expectLegalTransitions(frames)
            let specialists = ["Alex", "Kulu", "Mike", "Emma"]
            var starts: [ContinuousClock.Instant] = []
            var ends: [ContinuousClock.Instant] = []
            for role in specialists {
                // RESPONDING (first tokens) until the answer is done.
                let responding = received.first {
                    $0.frame.type == FrameType.roleStatusChange && $0.frame.data["role"]?.stringValue == role
                        && $0.frame.data["status"] == "RESPONDING"
                }
                let start = try #require(responding?.receivedAt, "\(role) never responded")
                let end = try #require(Self.instants(received, FrameType.agentComplete, role: role).first)
                starts.append(start)
                ends.append(end)
            }
            // Every specialist was answering at the same moment.
            #expect(starts.max()! < ends.min()!, "responding intervals do not overlap")
            // David starts only once all four are done, Catherine after David.
            let david = try #require(Self.instants(received, FrameType.agentStart, role: "David").first)
            let catherine = try #require(Self.instants(received, FrameType.agentStart, role: "Catherine").first)
            #expect(david > ends.max()!)
            #expect(catherine > Self.instants(received, FrameType.agentComplete, role: "David").first!)
            let complete = try #require(frames.last)
            #expect(complete.data["result"]?["status"] == "completed")
            #expect(complete.data["pattern"] == "parallel")
        }
    }

    /// The shipped team file with some roles' providers replaced; returns its path.
    static func teamFile(providers: [String: [String: Any]]) throws -> String {
        let path = NSTemporaryDirectory() + "team-\(UUID().uuidString.prefix(8)).json"
        let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/config/team.json")
        var team = try JSONSerialization.jsonObject(with: Data(contentsOf: shipped)) as! [String: Any]
        team["roles"] = (team["roles"] as! [[String: Any]]).map { role in
            guard let provider = providers[role["name"] as? String ?? ""] else { return role }
            var role = role
            role["provider"] = provider
            return role
        }
        try JSONSerialization.data(withJSONObject: team).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func aRoleWhoseProviderFailsIsLeftOutAndTheRunCompletes() async throws {
        // Mike talks to an OpenAI-compatible server (on the workers' allow-list) that is not there;
        // Kulu to one the workers do not list, which is never called (issue 14 item 3).
        let absent = "http://127.0.0.1:\(ServiceProcesses.freePort())/v1"
        let teamPath = try Self.teamFile(providers: [
            "Mike": ["kind": "openai", "baseURL": absent, "model": "absent", "timeoutSeconds": 30],
            "Kulu": [
                "kind": "openai", "baseURL": "http://127.0.0.1:\(ServiceProcesses.freePort())/v1", "model": "unlisted",
                "apiKeyEnv": "HOME",
            ],
        ])
        defer { try? FileManager.default.removeItem(atPath: teamPath) }

        try await ServiceProcesses.withStack(
            orchestratorEnvironment: ["SWITCHBOARD_TEAM_FILE": teamPath],
            agentEnvironment: ["SWITCHBOARD_AGENT_PROVIDERS": absent]
        ) { _, url, authority in
            let (_, received) = try await Self.converse(url: url, authority: authority, pattern: "parallel")
            let frames = received.map(\.frame)
            let paths = Self.expectLegalTransitions(frames)
            #expect(paths["Mike"] == ["IDLE", "ANALYZING", "THINKING", "ERROR", "IDLE"])
            let error = try #require(
                frames.first { $0.type == FrameType.agentError && $0.data["agent_source"] == "Mike" })
            #expect(error.data["event_type"] == "error")
            #expect(error.data["payload"]?["error_type"] == "connect")
            // Seed 001's error payload: 3 retries (2, 4, 8 s) were made before giving up.
            #expect(error.data["payload"]?["retry_count"] == 3)
            #expect(error.data["payload"]?["context"]?["agent_source"] == "Mike")
            let refused = try #require(
                frames.first { $0.type == FrameType.agentError && $0.data["agent_source"] == "Kulu" })
            #expect(refused.data["payload"]?["error_type"] == "notAllowed")
            #expect(paths["Kulu"]?.contains("ERROR") == true)
            // The others go on without Mike, and the answer says so.
            let david = try #require(frames.first { $0.type == FrameType.agentComplete && $0.data["role"] == "David" })
            #expect(david.data["payload"]?["summary"]?.stringValue?.isEmpty == false)
            let end = try #require(frames.first { $0.type == FrameType.messageStreamEnd })
            #expect(end.data["finalMessage"]?["role"] == "Catherine")
            let complete = try #require(frames.last)
            #expect(complete.type == FrameType.collaborationComplete)
            #expect(complete.data["result"]?["status"] == "partial")
            #expect(
                Set(complete.data["result"]?["failedRoles"]?.arrayValue?.compactMap(\.stringValue) ?? []) == [
                    "Mike", "Kulu",
                ])
            #expect(complete.data["result"]?["note"]?.stringValue?.contains("Mike") == true)
            let mike = complete.data["contributions"]?.arrayValue?.first { $0["role"] == "Mike" }
            #expect(mike?["status"] == "failed")
        }
    }

    @Test func hierarchicalDynamicAndDirectRunsCompleteWithLegalTransitions() async throws {
        try await ServiceProcesses.withStack { _, url, authority in
            let cases: [(pattern: String, content: String, roles: [String])] = [
                // The API and the user experience: Mike and Emma are the specialists.
                (
                    "hierarchical", "the api architecture and the user experience",
                    ["Mike", "Emma", "David", "Catherine"]
                ),
                // Market data first (Kulu); the rest follows from the results.
                ("dynamic", "what does the market data say about chat products", []),
                ("direct", "hello", ["Alex"]),
            ]
            for (pattern, content, expectedRoles) in cases {
                let (_, received) = try await Self.converse(
                    url: url, authority: authority, pattern: pattern, content: content)
                let frames = received.map(\.frame)
                let paths = Self.expectLegalTransitions(frames)
                let complete = try #require(frames.last, "\(pattern)")
                #expect(complete.type == FrameType.collaborationComplete, "\(pattern)")
                #expect(complete.data["pattern"] == .string(pattern))
                #expect(complete.data["result"]?["status"] == "completed", "\(pattern)")
                let ran = frames.filter { $0.type == FrameType.agentStart }.compactMap { $0.data["role"]?.stringValue }
                if !expectedRoles.isEmpty {
                    // Hierarchical's specialists start concurrently, in either order; the rest follow in order.
                    let concurrent = pattern == "hierarchical" ? 2 : 1
                    #expect(Set(ran.prefix(concurrent)) == Set(expectedRoles.prefix(concurrent)), "\(pattern): \(ran)")
                    #expect(
                        Array(ran.dropFirst(concurrent)) == Array(expectedRoles.dropFirst(concurrent)),
                        "\(pattern): \(ran)")
                }
                // Every role that ran is IDLE again, and the reply is the last role's.
                #expect(ran.allSatisfy { paths[$0]?.last == "IDLE" }, "\(pattern): \(paths)")
                #expect(
                    frames.first { $0.type == FrameType.messageStreamEnd }?.data["finalMessage"]?["role"]
                        == ran.last.map { .string($0) })
                if pattern == "dynamic" {
                    #expect(
                        ran.first == "Kulu" && ran.suffix(2) == ["David", "Catherine"] && (4...5).contains(ran.count),
                        "\(ran)")
                    // Roles of the dynamic pattern are assigned as they are chosen.
                    #expect(frames.filter { $0.type == FrameType.roleAssigned }.count == ran.count)
                }
            }
        }
    }

    /// With an engine that answers at once, a role's result can reach the orchestrator within
    /// milliseconds of its task. Runs back to back on one conversation must each complete, every role
    /// asked once per run, and no role left in a state that makes the next run's transitions illegal.
    @Test func instantAnswersBackToBackAllComplete() async throws {
        try await ServiceProcesses.withStack(tokensPerSecond: 0) { stack, url, authority in
            let token = try await authority.mint(user: "instant-\(UUID().uuidString.prefix(6))")
            let conversation = "instant-\(UUID().uuidString.prefix(8))"
            let runs = 6
            let (completed, _) = try await ChatClient.withConnection(url: url, token: token) { client -> Int in
                var completed = 0
                for index in 0..<runs {
                    client.send(
                        ClientCommand(
                            id: "m\(index)", type: ClientCommandType.sendMessage,
                            data: [
                                "conversationId": .string(conversation), "content": .string("option \(index), quickly"),
                                "pattern": "parallel",
                            ]))
                    while let next = await client.frames.next(within: .seconds(30)) {
                        if next.frame.type == FrameType.collaborationComplete { completed += 1; break }
                    }
                }
                return completed
            }
            #expect(completed == runs)
            let port = try #require(stack.logs(of: "orchestrator").first?.adminPort)
            let metrics = try await MisbehavingClientTests.text("http://127.0.0.1:\(port)/metrics")
            #expect(MisbehavingClientTests.value(of: "sb_role_illegal_transitions_total", in: metrics) ?? 0 == 0)
            for role in ["Alex", "Kulu", "Mike", "Emma", "David", "Catherine"] {
                let tasks = metrics.split(separator: "\n").first {
                    $0.hasPrefix("sb_orchestrator_tasks_total{role=\"\(role)\"}")
                }
                #expect(
                    tasks.flatMap { Double($0.split(separator: " ").last ?? "") } == Double(runs),
                    "\(role): \(tasks ?? "none")")
            }
        }
    }

    @Test func aMessageDuringARunWaitsForIt() async throws {
        try await ServiceProcesses.withStack { _, url, authority in
            let token = try await authority.mint(user: "queue-\(UUID().uuidString.prefix(6))")
            let conversation = "queue-\(UUID().uuidString.prefix(8))"
            let (received, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                for (id, content) in [("q1", "first question"), ("q2", "second question")] {
                    client.send(
                        ClientCommand(
                            id: id, type: ClientCommandType.sendMessage,
                            data: [
                                "conversationId": .string(conversation), "content": .string(content),
                                "pattern": "sequential",
                            ]))
                }
                var frames: [ServerFrame] = []
                var completed = 0
                while completed < 2, let next = await client.frames.next(within: .seconds(30)) {
                    frames.append(next.frame)
                    if next.frame.type == FrameType.collaborationComplete { completed += 1 }
                }
                return frames
            }
            let frames = try #require(received).filter { $0.channel == "conversation:\(conversation)" }
            _ = Self.expectLegalTransitions(frames)
            // One run after the other: START, COMPLETE, START, COMPLETE, each reply inside its run.
            let runEvents = frames.filter {
                $0.type == FrameType.collaborationStart || $0.type == FrameType.collaborationComplete
            }
            #expect(
                runEvents.map(\.type) == [
                    FrameType.collaborationStart, FrameType.collaborationComplete, FrameType.collaborationStart,
                    FrameType.collaborationComplete,
                ])
            let runs = runEvents.compactMap { $0.data["runId"]?.stringValue }
            #expect(runs.count == 4 && runs[0] == runs[1] && runs[2] == runs[3] && runs[0] != runs[2])
            let replies = frames.filter { $0.type == FrameType.messageStreamEnd }
            #expect(
                replies.compactMap { $0.data["finalMessage"]?["content"]?.stringValue?.contains("first question") } == [
                    true, false,
                ])
        }
    }

    @Test func rolesOnAnOpenAICompatibleServerStreamAndAStalledOneTimesOut() async throws {
        let fake = FakeOpenAI()
        try await fake.withServer { port in
            // Alex on a working model; Kulu on one that stops talking after its first words.
            let teamPath = try Self.teamFile(providers: [
                // The team file names a variable of its choosing: the worker sends the key its own
                // allow-list names for that server instead (issue 14 item 3).
                "Alex": [
                    "kind": "openai", "baseURL": "http://127.0.0.1:\(port)/ok/v1", "model": "fake",
                    "apiKeyEnv": "OTHER_SECRET",
                ],
                "Kulu": [
                    "kind": "openai", "baseURL": "http://127.0.0.1:\(port)/stall/v1", "model": "fake",
                    "timeoutSeconds": 1.5,
                ],
            ])
            defer { try? FileManager.default.removeItem(atPath: teamPath) }
            try await ServiceProcesses.withStack(
                orchestratorEnvironment: ["SWITCHBOARD_TEAM_FILE": teamPath],
                agentEnvironment: [
                    "FAKE_KEY": "sk-e2e", "OTHER_SECRET": "sk-not-for-this-server",
                    "SWITCHBOARD_AGENT_PROVIDERS":
                        "http://127.0.0.1:\(port)/ok/v1/=FAKE_KEY,http://127.0.0.1:\(port)/stall/v1",
                ]
            ) { _, url, authority in
                let (_, received) = try await Self.converse(url: url, authority: authority, pattern: "parallel")
                let frames = received.map(\.frame)
                let paths = Self.expectLegalTransitions(frames)

                // Alex's answer is the model's text, chunked without splitting the family emoji the
                // model sent in two pieces.
                let alex = frames.filter { $0.type == FrameType.agentChunk && $0.data["role"] == "Alex" }
                    .compactMap { $0.data["chunk"]?.stringValue }
                #expect(alex.joined() == FakeOpenAI.deltas.joined())
                #expect(alex.allSatisfy { !$0.unicodeScalars.first!.properties.isJoinControl })
                #expect(fake.authorizations.withLock { $0 }.contains("Bearer sk-e2e"))
                #expect(!fake.authorizations.withLock { $0 }.contains("Bearer sk-not-for-this-server"))
                #expect(paths["Alex"] == ["IDLE", "ANALYZING", "THINKING", "RESPONDING", "IDLE"])

                // Kulu answered a little, then went silent past its 1.5 s limit.
                #expect(paths["Kulu"] == ["IDLE", "ANALYZING", "THINKING", "RESPONDING", "ERROR", "IDLE"])
                let error = try #require(frames.first { $0.type == FrameType.agentError })
                #expect(error.data["agent_source"] == "Kulu" && error.data["payload"]?["error_type"] == "timeout")
                let complete = try #require(frames.last)
                #expect(complete.data["result"]?["failedRoles"] == ["Kulu"])
                let kulu = complete.data["contributions"]?.arrayValue?.first { $0["role"] == "Kulu" }
                #expect(kulu?["status"] == "failed" && kulu?["content"] == "Hel")
                #expect(
                    frames.first { $0.type == FrameType.messageStreamEnd }?.data["finalMessage"]?["role"] == "Catherine"
                )
            }
        }
    }
}
