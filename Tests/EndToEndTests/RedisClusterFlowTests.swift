import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// The whole stack on the local Redis Cluster (`SWITCHBOARD_REDIS_URL=redis+cluster://…`): channel events
/// go through the notifier's script with SPUBLISH and reach the gateway over SSUBSCRIBE, while the primary
/// of the shard holding the conversations fails over mid-stream. Leaves the cluster whole (roles swapped)
/// for the suites after it.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct RedisClusterFlowTests {
    /// Conversations streaming through the failover: half stay connected, half drop and resume by offset.
    static let conversations = 20

    @Test func conversationsAndAWorkflowStreamThroughTheirShardFailingOver() async throws {
        try await TestEnvironment.requireRedisCluster()
        try await ChatFlowTests.withStack(tokensPerSecond: 10, redisURL: TestEnvironment.redisClusterURL) {
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

            let promoted = try await RedisClusterNodes.failOver(failing)
            workflow.faultBegan()

            let resumed = try await ChaosTests.resume(dropped, url: url) { $0.type == FrameType.messageStreamEnd }
            for conversation in resumed {
                ChaosTests.expectEveryOffsetOnce(conversation)
                Self.expectOneWholeReply(conversation)
            }
            let stayed = try await staying.value
            for conversation in stayed {
                // Never resumed: one connection heard the whole reply.
                #expect(!conversation.frames.contains { $0.correlationId == "resume" }, "\(conversation.id)")
                let offsets = conversation.positioned.compactMap(\.offset)
                #expect(offsets == Array((offsets.first ?? 0)..<((offsets.first ?? 0) + Int64(offsets.count))))
                Self.expectOneWholeReply(conversation)
            }
            ChaosTests.report(
                "Redis Cluster primary failed over (CLUSTER FAILOVER \(failing) → \(promoted))", resumed + stayed,
                extra: ", \(stayed.count) stayed connected")
            try await workflow.expectCompletedOnce(fault: "Redis Cluster primary failed over")
            #expect(try await DependencyOutageTests.deadLetterCounts(stack.binDirectory) == deadLetters)
            try await ChaosTests.expectAFreshConversationCompletes(url: url, authority: authority)
        }
        try await RedisClusterNodes.waitUntilWhole()
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
    /// streams and the client reads on to its end on that connection; without, the client leaves then,
    /// as one whose network dropped.
    static func talk(
        _ conversations: [ChaosTests.Conversation], url: String, streaming: (@Sendable () -> Void)? = nil
    ) async throws -> [ChaosTests.Conversation] {
        try await withThrowingTaskGroup(of: ChaosTests.Conversation.self) { group in
            for conversation in conversations {
                group.addTask {
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
                        return frames
                            + (await client.frames.collect(idle: .seconds(30)) {
                                $0.channel == "conversation:\(conversation.id)"
                                    && $0.type == FrameType.messageStreamEnd
                            })
                    }
                    var talked = conversation
                    talked.frames = received ?? []
                    return talked
                }
            }
            var all: [ChaosTests.Conversation] = []
            for try await conversation in group { all.append(conversation) }
            return all
        }
    }

    /// The reply streamed whole and ended once.
    static func expectOneWholeReply(
        _ conversation: ChaosTests.Conversation, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        RecoveryTests.expectCompleteStream(
            conversation.frames.filter { $0.channel == "conversation:\(conversation.id)" },
            sourceLocation: sourceLocation)
        #expect(
            ChaosTests.endsPerReply(conversation).values.sorted() == [1], "\(conversation.id)",
            sourceLocation: sourceLocation)
    }
}
