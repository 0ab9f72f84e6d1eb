import Foundation
import Notifier
import ServiceLifecycle
import Synchronization
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardTestSupport
import Testing

/// `RedisClient` and `RedisSubscriber` against the real local Redis Cluster `make test` starts (3
/// primaries, 3 replicas): routing by slot, pipelines across slots, MOVED/ASK, sharded PUB/SUB, and a
/// primary failing over under load. Each test leaves the cluster whole, but maybe with other primaries.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct RedisClusterTests {
    let logger = TestEnvironment.logger

    func makeClient() -> RedisClient {
        RedisClient(
            configuration: RedisClientConfiguration(endpoint: TestEnvironment.redisClusterEndpoint), logger: logger)
    }

    /// One tag per primary, so a test touches every shard.
    func tagPerPrimary(_ primaries: [RedisNodeAddress], prefix: String) async throws -> [RedisNodeAddress: String] {
        var tags: [RedisNodeAddress: String] = [:]
        var index = 0
        while tags.count < primaries.count {
            let tag = "\(prefix)-\(index)"
            index += 1
            let owner = try await RedisClusterNodes.owner(of: "{\(tag)}", among: primaries)
            if tags[owner] == nil { tags[owner] = tag }
        }
        return tags
    }

    func waitUntil(_ what: String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool)
        async throws
    {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw RedisError(.server, "timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    @Test func commandsScriptsAndPipelinesLandOnTheNodeOwningTheirSlot() async throws {
        try await TestEnvironment.requireRedisCluster()
        let redis = makeClient()
        let run = UUID().uuidString.prefix(8)
        let keys = (0..<60).map { "test:{cluster-\(run)-\($0)}:value" }
        for (index, key) in keys.enumerated() { try await redis.send("SET", RedisArgument(key), RedisArgument(index)) }
        // Every key sits on exactly the primary that owns its slot, and the keys spread over every primary.
        let primaries = try await RedisClusterNodes.topology().primaries
        #expect(primaries.count == 3)
        var owners: Set<RedisNodeAddress> = []
        for (index, key) in keys.enumerated().prefix(20) {
            let owner = try await RedisClusterNodes.owner(of: key, among: primaries)
            owners.insert(owner)
            #expect(
                try await RedisClusterNodes.onNode(owner) { try await $0.send("GET", RedisArgument(key)) }.integer
                    == Int64(index))
        }
        #expect(owners.count == 3)

        // A pipeline across slots: answers in the order of the commands.
        let replies = try await redis.pipeline(keys.map { ["INCR", RedisArgument($0)] })
        #expect(replies.map(\.integer) == (1...60).map { Int64($0) })

        // A script keeps its keys in one tag, wherever that tag lives, and is loaded again on a node that
        // lost it.
        let script = RedisScript("redis.call('SET', KEYS[2], ARGV[1]); return redis.call('INCR', KEYS[1])")
        try await redis.load(script)
        for (index, key) in keys.enumerated() {
            let tag = "{cluster-\(run)-\(index)}"
            #expect(
                try await redis.run(script, keys: [RedisArgument(key), "test:\(tag):other"], arguments: ["x"]).integer
                    == Int64(index + 2))
        }
        for primary in primaries {
            _ = try await RedisClusterNodes.onNode(primary) { try await $0.send("SCRIPT", "FLUSH") }
        }
        for key in keys.prefix(9) {
            #expect(
                try await redis.run(script, keys: [RedisArgument(key), RedisArgument(key)], arguments: ["7"]).integer
                    == 8)
        }
        _ = try await redis.pipeline(keys.map { ["DEL", RedisArgument($0)] })
        await redis.close()
    }

    @Test func aMigratingSlotIsFollowedThroughAskAndThenMoved() async throws {
        try await TestEnvironment.requireRedisCluster()
        let redis = makeClient()
        let tag = "migrate-\(UUID().uuidString.prefix(8))"
        let moving = "test:{\(tag)}:moving"
        let staying = "test:{\(tag)}:staying"
        try await redis.send("SET", RedisArgument(moving), "m")
        try await redis.send("SET", RedisArgument(staying), "s")
        let primaries = try await RedisClusterNodes.topology().primaries
        let source = try await RedisClusterNodes.owner(of: moving, among: primaries)
        let destination = try #require(primaries.first { $0 != source })
        let slot = RedisArgument(RedisHashSlot.of(moving))
        func on(_ node: RedisNodeAddress, _ command: RedisArgument...) async throws -> RESPValue {
            try await RedisClusterNodes.onNode(node) { try await $0.send(command) }
        }
        func migrate(_ key: String) async throws {
            _ = try await on(
                source, "MIGRATE", RedisArgument(destination.host), RedisArgument(destination.port), RedisArgument(key),
                "0", "5000")
        }
        let sourceID = RedisArgument(try #require(try await on(source, "CLUSTER", "MYID").string))
        let destinationID = RedisArgument(try #require(try await on(destination, "CLUSTER", "MYID").string))

        // Mid-migration: one key moved, the other not yet. The moved one answers ASK on the source.
        _ = try await on(destination, "CLUSTER", "SETSLOT", slot, "IMPORTING", sourceID)
        _ = try await on(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", destinationID)
        try await migrate(moving)
        #expect(try await redis.send("GET", RedisArgument(moving)).string == "m")
        #expect(try await redis.send("GET", RedisArgument(staying)).string == "s")

        // Migration done: the slot belongs to the destination, and the source answers MOVED.
        try await migrate(staying)
        for node in [destination, source] { _ = try await on(node, "CLUSTER", "SETSLOT", slot, "NODE", destinationID) }
        #expect(try await redis.send("GET", RedisArgument(staying)).string == "s")
        #expect(
            try await redis.pipeline([["GET", RedisArgument(moving)], ["GET", RedisArgument(staying)]]).map(\.string)
                == ["m", "s"])
        #expect(try await RedisClusterNodes.owner(of: staying, among: primaries) == destination)
        try await redis.send("DEL", RedisArgument(moving), RedisArgument(staying))
        await redis.close()
    }

    @Test func shardedPubSubDeliversOnEveryShard() async throws {
        try await TestEnvironment.requireRedisCluster()
        let redis = makeClient()
        let subscriber = RedisSubscriber(endpoint: TestEnvironment.redisClusterEndpoint, logger: logger)
        let primaries = try await RedisClusterNodes.topology().primaries
        let tags = try await tagPerPrimary(primaries, prefix: "conversation:pubsub-\(UUID().uuidString.prefix(8))")
        let received = Mutex<[String: [String]]>([:])
        var channels: [RedisNodeAddress: String] = [:]
        for (primary, tag) in tags {
            let channel = "sb:{\(tag)}:live"
            channels[primary] = channel
            _ = try await subscriber.subscribe(channel) { message in
                received.withLock { $0[channel, default: []].append(String(decoding: message, as: UTF8.self)) }
            }
        }
        // A cluster-wide channel keeps plain SUBSCRIBE.
        let global = "sb:test:global:\(UUID().uuidString.prefix(8))"
        _ = try await subscriber.subscribe(global) { message in
            received.withLock { $0[global, default: []].append(String(decoding: message, as: UTF8.self)) }
        }
        #expect(redis.publishCommand(for: global) == "PUBLISH")
        for (primary, channel) in channels {
            #expect(redis.publishCommand(for: channel) == "SPUBLISH")
            // The shard channel is subscribed on its own shard only.
            let count = try await RedisClusterNodes.onNode(primary) {
                try await $0.send("PUBSUB", "SHARDNUMSUB", RedisArgument(channel)).array?.last?.integer
            }
            #expect(count == 1)
            try await redis.send(redis.publishCommand(for: channel), RedisArgument(channel), "hello \(primary.port)")
        }
        try await redis.send("PUBLISH", RedisArgument(global), "everyone")
        try await waitUntil("every shard's message") {
            received.withLock { $0.values.map(\.count).reduce(0, +) } == channels.count + 1
        }
        for (primary, channel) in channels { #expect(received.withLock { $0[channel] } == ["hello \(primary.port)"]) }
        #expect(received.withLock { $0[global] } == ["everyone"])
        await redis.close()
    }

    /// A channel addressed to one gateway is a shard channel, so the publisher's count of receivers is the
    /// gateway's wherever its subscription and the publisher's connection are: the voice-worker waits on
    /// a count of 0 for a gateway subscribing again. A cluster-wide PUBLISH would count one node only.
    @Test func aGatewaysChannelCountsItsListenerOnEveryShard() async throws {
        try await TestEnvironment.requireRedisCluster()
        let redis = makeClient()
        let subscriber = RedisSubscriber(endpoint: TestEnvironment.redisClusterEndpoint, logger: logger)
        let primaries = try await RedisClusterNodes.topology().primaries
        let gateways = try await tagPerPrimary(primaries, prefix: "gateway:count-\(UUID().uuidString.prefix(8))")
        for tag in gateways.values {
            let gateway = String(tag.dropFirst("gateway:".count))
            let channel = Keyspace.PubSub.voiceDownlink(gateway: gateway)
            #expect(redis.publishCommand(for: channel) == "SPUBLISH")
            #expect(try await redis.publish([Array("unheard".utf8)], to: channel) == 0)
            let heard = Mutex<[String]>([])
            _ = try await subscriber.subscribe(channel) { message in
                heard.withLock { $0.append(String(decoding: message, as: UTF8.self)) }
            }
            #expect(try await redis.publish([Array("one".utf8), Array("two".utf8)], to: channel) == 2)
            try await waitUntil("\(channel)'s messages") { heard.withLock { $0 } == ["one", "two"] }
        }
        await redis.close()
    }

    @Test func theNotifierScriptPublishesOnTheChannelsShard() async throws {
        try await TestEnvironment.requireRedisCluster()
        let redis = makeClient()
        let subscriber = RedisSubscriber(endpoint: TestEnvironment.redisClusterEndpoint, logger: logger)
        let publisher = ChannelPublisher(redis: redis)
        try await publisher.prepare()
        let conversations = (0..<6).map { _ in Channel.conversation(UUID().uuidString.lowercased()) }
        let received = Mutex<[String: Int]>([:])
        for channel in conversations {
            let live = Keyspace.ClientChannel.live(channel)
            _ = try await subscriber.subscribe(live) { _ in received.withLock { $0[live, default: 0] += 1 } }
        }
        let publications = conversations.flatMap { channel in
            (0..<3).map { index in
                ChannelPublisher.Publication(
                    eventID: UUID(), channel: channel, frameType: "TEST", createdAt: Int64(index),
                    frameJSON: Array(#"{"n":\#(index)}"#.utf8), ephemeral: index == 2)
            }
        }
        let outcomes = try await publisher.publish(publications)
        // Offsets per channel in order, in one pipeline spread over the shards.
        for (publication, outcome) in zip(publications, outcomes) {
            switch outcome {
            case .published(let offset, _): #expect(offset == publication.createdAt + 1)
            case .ephemeral: #expect(publication.ephemeral)
            case .duplicate: Issue.record("unexpected duplicate")
            }
        }
        try await waitUntil("every publication") { received.withLock { $0.values.reduce(0, +) } == publications.count }
        #expect(received.withLock { Set($0.values) } == [3])
        await redis.close()
    }

    @Test func aPrimaryFailingOverIsFollowedByCommandsAndSubscriptions() async throws {
        try await TestEnvironment.requireRedisCluster()
        let redis = makeClient()
        let subscriber = RedisSubscriber(endpoint: TestEnvironment.redisClusterEndpoint, logger: logger)
        let running = Task { try await subscriber.run() }
        defer { running.cancel() }
        let primaries = try await RedisClusterNodes.topology().primaries
        let tag = "conversation:failover-\(UUID().uuidString.prefix(8))"
        let channel = "sb:{\(tag)}:live"
        let key = "test:{\(tag)}:counter"
        let oldPrimary = try await RedisClusterNodes.owner(of: key, among: primaries)
        let received = Mutex<[Int]>([])
        _ = try await subscriber.subscribe(channel) { message in
            received.withLock { $0.append(Int(String(decoding: message, as: UTF8.self)) ?? -1) }
        }

        // Publish and count while the replica takes over.
        let published = Mutex<[Int]>([])
        let load = Task {
            for index in 0..<Int.max {
                if Task.isCancelled { break }
                do {
                    try await redis.send("INCR", RedisArgument(key))
                    try await redis.send("SPUBLISH", RedisArgument(channel), RedisArgument(index))
                    published.withLock { $0.append(index) }
                } catch {
                    // A command caught in flight by the switch fails; the next ones find the new primary.
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        try await waitUntil("publishing before the failover") { published.withLock { $0.count } >= 10 }
        let replica = try await RedisClusterNodes.failOver(oldPrimary)
        let afterFailover = published.withLock { $0.count }
        try await waitUntil("messages published after the failover to arrive") {
            let last = published.withLock { $0.last ?? 0 }
            return published.withLock { $0.count } >= afterFailover + 20
                && received.withLock { $0.contains(last) }
        }
        load.cancel()
        _ = await load.value
        // The client follows: the counter lives on the new primary and counts every acknowledged INCR.
        #expect(try await RedisClusterNodes.owner(of: key, among: [replica]) == replica)
        let counter = try #require(try await redis.send("GET", RedisArgument(key)).integer)
        #expect(counter >= Int64(published.withLock { $0.count }))
        // Messages kept arriving through the switch, in order, once each.
        let got = received.withLock { $0 }
        #expect(got == got.sorted() && Set(got).count == got.count)

        // A demoted primary still serves its shard's channels as a replica (SPUBLISH reaches replicas), so
        // the subscription may have stayed there. Cut the subscriber's connections to both nodes, as a
        // node failing would: it subscribes again on the slot's primary, and hears what follows.
        func subscriptions(on node: RedisNodeAddress) async throws -> Int64? {
            try await RedisClusterNodes.onNode(node) {
                try await $0.send("PUBSUB", "SHARDNUMSUB", RedisArgument(channel)).array?.last?.integer
            }
        }
        #expect(try await subscriptions(on: oldPrimary)! + subscriptions(on: replica)! == 1)
        for node in [oldPrimary, replica] {
            _ = try await RedisClusterNodes.onNode(node) { try await $0.send("CLIENT", "KILL", "TYPE", "pubsub") }
        }
        try await waitUntil("the subscriber to subscribe again on the new primary") {
            try await subscriptions(on: replica) == 1
        }
        try await redis.send("SPUBLISH", RedisArgument(channel), "-2")
        try await waitUntil("a message after the resubscription") { received.withLock { $0.last == -2 } }
        try await redis.send("DEL", RedisArgument(key))
        await redis.close()
    }

    /// A primary just demoted by a failover takes SSUBSCRIBE, as any replica does, but until its new
    /// primary counts it among its replicas the shard's messages do not reach it (about half a second
    /// here). A subscriber whose slot map predates the failover must not leave a channel there: it
    /// checks the node answers for the slot as primary, and follows its MOVED to the new one.
    @Test func aChannelSubscribedRightAfterItsPrimaryWasDemotedHearsEveryMessage() async throws {
        try await TestEnvironment.requireRedisCluster()
        let subscriber = RedisSubscriber(endpoint: TestEnvironment.redisClusterEndpoint, logger: logger)
        let running = Task { try await subscriber.run() }
        defer { running.cancel() }
        let primaries = try await RedisClusterNodes.topology().primaries
        let tags = try await tagPerPrimary(primaries, prefix: "demoted-\(UUID().uuidString.prefix(8))")
        let demoted = primaries[0]
        // The subscriber reads the slot map, with `demoted` still a primary, for another shard's channel.
        let other = try #require(tags.first { $0.key != demoted }?.value)
        _ = try await subscriber.subscribe("sb:{\(other)}:live") { _ in }
        let promoted = try await RedisClusterNodes.failOver(demoted)
        try await waitUntil("the old primary to serve as a replica") {
            try await RedisClusterNodes.topology().replicaOf[demoted] == promoted
        }

        let channel = "sb:{\(try #require(tags[demoted]))}:live"
        let received = Mutex<Set<Int>>([])
        _ = try await subscriber.subscribe(channel) { message in
            _ = received.withLock { $0.insert(Int(String(decoding: message, as: UTF8.self)) ?? -1) }
        }
        // Published on the new primary from the moment the subscription holds: every message arrives.
        try await RedisClusterNodes.onNode(promoted) { redis in
            for index in 0..<50 {
                try await redis.send("SPUBLISH", RedisArgument(channel), RedisArgument(index))
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        try await waitUntil("all 50 messages") { received.withLock { $0.count } == 50 }
        #expect(received.withLock { $0 } == Set(0..<50))
        try await RedisClusterNodes.waitUntilWhole()
    }
}
