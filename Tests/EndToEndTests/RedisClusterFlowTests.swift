import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// The whole stack on the local Redis Cluster (`SWITCHBOARD_REDIS_URL=redis+cluster://…`): channel events
/// go through the notifier's script with SPUBLISH and reach the gateway over SSUBSCRIBE, while the primary
/// of the shard holding the conversations fails over mid-stream. Each test leaves the cluster whole (its
/// roles swapped) for the suites after it.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct RedisClusterFlowTests {
    /// Conversations streaming through the fault: half stay connected, half drop and resume by offset.
    static let conversations = 20

    /// A manual failover loses no acknowledged write: every client gets every offset once.
    @Test func conversationsAndAWorkflowStreamThroughTheirShardFailingOver() async throws {
        try await Self.streamThrough("Redis Cluster primary failed over (CLUSTER FAILOVER)", stateMayBeLost: false) {
            _ = try await RedisClusterNodes.failOver($0)
        }
        try await RedisClusterNodes.waitUntilWhole()
    }

    /// A primary SIGKILLed: its replica takes over once the others mark it failed (`cluster-node-timeout`
    /// 2 s). What it acknowledged but had not yet replicated is lost: a client resuming past that is
    /// told `recovered: false`. The node is started again afterwards and rejoins as a replica.
    @Test func conversationsAndAWorkflowStreamThroughTheirPrimaryKilled() async throws {
        let killed = Locked<RedisNodeAddress?>(nil)
        do {
            try await Self.streamThrough("Redis Cluster primary SIGKILLed", stateMayBeLost: true) { primary in
                try RedisClusterNodes.kill(primary)
                killed.withLock { $0 = primary }
            }
        } catch {
            if let node = killed.withLock({ $0 }) { try? await RedisClusterNodes.restart(node) }
            throw error
        }
        try await RedisClusterNodes.restart(try #require(killed.withLock { $0 }))
    }

    /// Conversations on one shard (half connected throughout, half dropping and resuming by offset) and a
    /// workflow run stream while `fault` strikes that shard's primary.
    static func streamThrough(
        _ name: String, stateMayBeLost: Bool, fault: @escaping @Sendable (RedisNodeAddress) async throws -> Void
    ) async throws {
        try await ServiceProcesses.withStack(tokensPerSecond: 10, redisURL: TestEnvironment.redisClusterURL) {
            stack, url, authority in
            let deadLetters = try await DependencyOutageTests.deadLetterCounts(stack.binDirectory)
            let primaries = try await RedisClusterNodes.topology().primaries
            let failing = try #require(primaries.randomElement())
            let workflow = try await WorkflowThroughFault.start(url: url, authority: authority)
            var conversations: [ChaosTests.Conversation] = []
            for index in 0..<Self.conversations {
                let user = "cluster-\(index)"
                let id = try await Self.conversationID(on: failing, among: primaries, label: user)
                conversations.append(.init(id: id, token: try await authority.mint(user: user), frames: []))
            }
            let streaming = Locked(0)
            let staying = Task {
                try await Self.talk(Array(conversations.prefix(Self.conversations / 2)), url: url) {
                    streaming.withLock { $0 += 1 }
                }
            }
            let dropped = try await Self.talk(Array(conversations.suffix(Self.conversations / 2)), url: url)
            #expect(
                await eventually { streaming.withLock { $0 } == Self.conversations / 2 },
                "the connected clients' replies did not start")

            try await fault(failing)
            workflow.faultBegan()

            let resumed = try await ChaosTests.resume(dropped, url: url) { $0.type == FrameType.messageStreamEnd }
            let stayed = try await staying.value
            for conversation in resumed {
                #expect(conversation.frames.contains { $0.correlationId == "resume" }, "\(conversation.id) not resumed")
            }
            var told = 0
            for conversation in resumed + stayed {
                if Self.expectEveryOffsetOnceOrTold(conversation) { told += 1 }
            }
            #expect(stateMayBeLost || told == 0, "\(told) clients told recovered:false")
            let reconnected = stayed.filter { $0.frames.contains { $0.correlationId == "resume" } }.count
            ChaosTests.report(
                "\(name), \(failing)", resumed + stayed,
                extra:
                    ", \(stayed.count) connected throughout (\(reconnected) reconnected), \(told) told recovered:false"
            )
            try await workflow.expectCompletedOnce(fault: name)
            #expect(try await DependencyOutageTests.deadLetterCounts(stack.binDirectory) == deadLetters)
            try await ChaosTests.expectAFreshConversationCompletes(url: url, authority: authority)
        }
    }

    /// A conversation id whose channel (keys and live channel, one hash tag) lives on `primary`'s shard.
    static func conversationID(on primary: RedisNodeAddress, among primaries: [RedisNodeAddress], label: String)
        async throws -> String
    {
        while true {
            let id = "\(label)-\(UUID().uuidString.prefix(8))"
            let key = Keyspace.ClientChannel.meta(.conversation(id))
            if try await RedisClusterNodes.owner(of: key, among: primaries) == primary { return id }
        }
    }

    /// Each client sends its message and reads its reply. With `streaming`, it is called once the reply
    /// streams and the client reads on to its end, resuming by offset on a new connection if the gateway
    /// closes this one; without, the client leaves then, as one whose network dropped.
    static func talk(
        _ conversations: [ChaosTests.Conversation], url: String, streaming: (@Sendable () -> Void)? = nil
    ) async throws -> [ChaosTests.Conversation] {
        try await withThrowingTaskGroup(of: ChaosTests.Conversation.self) { group in
            for conversation in conversations {
                group.addTask {
                    let ended: @Sendable (ServerFrame) -> Bool = {
                        $0.channel == "conversation:\(conversation.id)" && $0.type == FrameType.messageStreamEnd
                    }
                    let (received, _) = try await ChatClient.withConnection(url: url, token: conversation.token) {
                        client -> [ServerFrame] in
                        client.send(RecoveryTests.send(conversation.id, "a shard fails over while we talk"))
                        var frames: [ServerFrame] = []
                        while let next = await client.frames.next(within: .seconds(30)) {
                            frames.append(next.frame)
                            if ChaosTests.chunks(frames) >= 3 { break }
                        }
                        guard let streaming else { return frames }
                        streaming()
                        return frames + (await client.frames.collect(idle: .seconds(30), until: ended))
                    }
                    var talked = conversation
                    talked.frames = received ?? []
                    guard streaming != nil else { return talked }
                    // Closed before the end (a 4003 when missed events could not be read again): resume.
                    for _ in 0..<3 where !talked.frames.contains(where: ended) {
                        talked = try await ChaosTests.resume([talked], url: url, done: ended)[0]
                    }
                    return talked
                }
            }
            var all: [ChaosTests.Conversation] = []
            for try await conversation in group { all.append(conversation) }
            return all
        }
    }

    /// The reply streamed whole and ended once, every offset once, or (returning true) the client's last
    /// resume was told `recovered: false` and what followed is one unbroken run up to one end.
    static func expectEveryOffsetOnceOrTold(
        _ conversation: ChaosTests.Conversation, sourceLocation: SourceLocation = #_sourceLocation
    ) -> Bool {
        let acks = conversation.frames.filter { $0.correlationId == "resume" }
        #expect(acks.allSatisfy { $0.type == "ACK" }, "\(conversation.id): \(acks)", sourceLocation: sourceLocation)
        var frames = conversation.frames[...]
        let told = acks.last { $0.data["recovered"]?.boolValue == false } != nil
        if told {
            frames = frames.suffix(from: frames.lastIndex { $0.data["recovered"]?.boolValue == false }!)
        }
        let positioned = frames.filter { $0.offset != nil && $0.channel == "conversation:\(conversation.id)" }
        let offsets = positioned.compactMap(\.offset)
        #expect(
            offsets == Array((offsets.first ?? 0)..<((offsets.first ?? 0) + Int64(offsets.count))),
            "\(conversation.id): offsets \(offsets)", sourceLocation: sourceLocation)
        #expect(Set(positioned.compactMap(\.epoch)).count == 1, sourceLocation: sourceLocation)
        #expect(
            positioned.filter { $0.type == FrameType.messageStreamEnd }.count == 1, "\(conversation.id)",
            sourceLocation: sourceLocation)
        if !told { RecoveryTests.expectCompleteStream(Array(positioned), sourceLocation: sourceLocation) }
        return told
    }
}
