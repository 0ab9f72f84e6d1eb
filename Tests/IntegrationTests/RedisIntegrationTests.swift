import Foundation
import Notifier
import ServiceLifecycle
import Synchronization
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardTestSupport
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)))
struct RedisIntegrationTests {
    let logger = TestEnvironment.logger

    func makeClient(poolSize: Int = 2) -> RedisClient {
        var configuration = RedisClientConfiguration(endpoint: TestEnvironment.redisEndpoint)
        configuration.poolSize = poolSize
        return RedisClient(configuration: configuration, logger: logger)
    }

    @Test func pipelinedRepliesComeBackInOrder() async throws {
        try await TestEnvironment.requireRedis()
        let redis = makeClient(poolSize: 1)
        let key = "test:{pipe}:\(UUID())"
        let commands: [[RedisArgument]] = (0..<200).map { ["RPUSH", RedisArgument(key), RedisArgument($0)] }
        let replies = try await redis.pipeline(commands)
        #expect(replies.map(\.integer) == (1...200).map { Int64($0) })
        let range = try await redis.send("LRANGE", RedisArgument(key), "0", "-1")
        #expect(range.array?.compactMap(\.string) == (0..<200).map(String.init))
        try await redis.send("DEL", RedisArgument(key))
        await redis.close()
    }

    @Test func binarySafeValuesAndErrorReplies() async throws {
        try await TestEnvironment.requireRedis()
        let redis = makeClient()
        let key = "test:{bin}:\(UUID())"
        let bytes: [UInt8] = [0, 1, 2, 0x0D, 0x0A, 255, 0]
        try await redis.send("SET", RedisArgument(key), RedisArgument(bytes: bytes))
        #expect(try await redis.send("GET", RedisArgument(key)).bytes == bytes)
        #expect(try await redis.send("GET", "test:missing:\(UUID())").isNull)
        await #expect {
            try await redis.send("INCR", RedisArgument(key))
        } throws: { ($0 as? RedisError)?.code == .server }
        // The connection is still usable after an error reply.
        try await redis.ping()
        try await redis.send("DEL", RedisArgument(key))
        await redis.close()
    }

    @Test func scriptsRunBySHAAndReloadAfterAFlush() async throws {
        try await TestEnvironment.requireRedis()
        let redis = makeClient()
        let script = RedisScript("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")
        let key = "test:{lua}:\(UUID())"
        try await redis.load(script)
        let first = try await redis.run(script, keys: [RedisArgument(key)], arguments: ["x"])
        #expect(first.array?.map(\.string) == [key, "x", "1"])
        try await redis.send("SCRIPT", "FLUSH")
        let second = try await redis.run(script, keys: [RedisArgument(key)], arguments: ["y"])
        #expect(second.array?.map(\.string) == [key, "y", "2"])
        try await redis.send("DEL", RedisArgument(key))
        await redis.close()
    }

    @Test func reconnectsAfterTheServerDropsTheConnection() async throws {
        try await TestEnvironment.requireRedis()
        let redis = makeClient(poolSize: 1)
        try await redis.send("CLIENT", "SETNAME", "switchboard-reconnect-test")
        try await redis.send("CLIENT", "KILL", "SKIPME", "no", "TYPE", "normal")  // drops our own connection too
        // The first command after the drop may fail with a connection error; the pool reconnects.
        let recovered = await eventually(timeout: .seconds(5)) { (try? await redis.ping()) != nil }
        #expect(recovered)
        await redis.close()
    }

    @Test func pubSubIsReferenceCountedPerChannel() async throws {
        try await TestEnvironment.requireRedis()
        let redis = makeClient()
        let subscriber = RedisSubscriber(endpoint: TestEnvironment.redisEndpoint, logger: logger)
        let group = ServiceGroup(services: [subscriber], logger: logger)
        let channel = "test:{ps}:\(UUID())"
        let first = Locked<[String]>([])
        let second = Locked<[String]>([])
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let firstToken = try await subscriber.subscribe(channel) { message in
                first.withLock { $0.append(String(decoding: message, as: UTF8.self)) }
            }
            let secondToken = try await subscriber.subscribe(channel) { message in
                second.withLock { $0.append(String(decoding: message, as: UTF8.self)) }
            }
            #expect(subscriber.subscribedChannelCount == 1)
            #expect(try await redis.publish([Array("one".utf8)], to: channel) == 1)
            #expect(await eventually { first.withLock { $0 } == ["one"] && second.withLock { $0 } == ["one"] })
            await subscriber.unsubscribe(firstToken)
            try await redis.send("PUBLISH", RedisArgument(channel), "two")
            #expect(await eventually { second.withLock { $0 } == ["one", "two"] })
            #expect(first.withLock { $0 } == ["one"])
            await subscriber.unsubscribe(secondToken)
            #expect(subscriber.subscribedChannelCount == 0)
            // Nobody listening: the publisher is told none of its messages was heard.
            #expect(await eventually { (try? await redis.publish([Array("three".utf8)], to: channel)) == 0 })
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        await redis.close()
    }

    /// A listener that subscribes late (a gateway subscribing again after Redis came back) still hears
    /// every message, in order; with nobody listening the publisher is told after the listener wait.
    @Test func publishUntilHeardWaitsForALateListener() async throws {
        try await TestEnvironment.requireRedis()
        let redis = makeClient()
        let subscriber = RedisSubscriber(endpoint: TestEnvironment.redisEndpoint, logger: logger)
        let group = ServiceGroup(services: [subscriber], logger: logger)
        let channel = "test:{late}:\(UUID())"
        let heard = Locked<[String]>([])
        let messages = ["one", "two", "three"].map { Array($0.utf8) }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let publishing = Task {
                try await redis.publishUntilHeard(
                    messages, to: channel, listenerWait: .seconds(5), deadline: .now + .seconds(5))
            }
            try await Task.sleep(for: .milliseconds(400))
            let token = try await subscriber.subscribe(channel) { message in
                heard.withLock { $0.append(String(decoding: message, as: UTF8.self)) }
            }
            #expect(try await publishing.value == 3)
            #expect(await eventually { heard.withLock { $0 } == ["one", "two", "three"] })
            await subscriber.unsubscribe(token)

            let start = ContinuousClock.now
            let nobody = try await redis.publishUntilHeard(
                messages, to: channel, listenerWait: .milliseconds(300), deadline: .now + .seconds(5))
            #expect(nobody == 0)
            #expect(ContinuousClock.now - start >= .milliseconds(300))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        await redis.close()
    }

    /// One event through the publisher's batch path, as the notifier's per-message fallback sends it.
    func publishOne(
        _ publisher: ChannelPublisher, eventID: UUID, channel: Channel, frameType: String, createdAt: Int64,
        frameJSON: String,
        ephemeral: Bool
    ) async throws -> ChannelPublisher.Outcome {
        try await publisher.publish([
            ChannelPublisher.Publication(
                eventID: eventID, channel: channel, frameType: frameType, createdAt: createdAt,
                frameJSON: Array(frameJSON.utf8),
                ephemeral: ephemeral)
        ])[0]
    }

    @Test func channelPublisherNumbersEventsOnceAndCapsTheStream() async throws {
        try await TestEnvironment.requireRedis()
        let redis = makeClient()
        var limits = ChannelPublisher.Limits()
        limits.streamLength = 5
        let publisher = ChannelPublisher(redis: redis, limits: limits)
        try await publisher.prepare()
        let channel = Channel.conversation("pub-\(UUID().uuidString.prefix(8))")
        var epochs = Set<String>()
        let ids = (0..<8).map { _ in UUID() }
        for (index, id) in ids.enumerated() {
            let outcome = try await publishOne(
                publisher, eventID: id, channel: channel, frameType: "T", createdAt: 1, frameJSON: "{\"n\":\(index)}",
                ephemeral: false)
            guard case .published(let offset, let epoch) = outcome else {
                Issue.record("expected a publication, got \(outcome)")
                continue
            }
            #expect(offset == Int64(index + 1))
            epochs.insert(epoch)
        }
        #expect(epochs.count == 1)
        // Kafka redelivers the same event: it is published once.
        #expect(
            try await publishOne(
                publisher, eventID: ids[3], channel: channel, frameType: "T", createdAt: 1, frameJSON: "{}",
                ephemeral: false) == .duplicate)
        let length = try await redis.send("XLEN", RedisArgument(Keyspace.ClientChannel.stream(channel)))
        #expect(length.integer == 5)
        let newest = try await redis.send(
            "XREVRANGE", RedisArgument(Keyspace.ClientChannel.stream(channel)), "+", "-", "COUNT", "1")
        #expect(newest.array?.first?.array?.first?.string == "8-1")
        #expect(
            try await publishOne(
                publisher, eventID: UUID(), channel: channel, frameType: "T", createdAt: 1, frameJSON: "{}",
                ephemeral: true) == .ephemeral)
        await redis.close()
    }

    /// The notifier's batches: one pipelined round trip keeps each channel's order and offsets, a
    /// redelivered event inside the batch is a duplicate, and a Redis that lost its scripts is handled.
    @Test func channelPublisherBatchesKeepOrderAcrossChannels() async throws {
        try await TestEnvironment.requireRedis()
        let redis = makeClient(poolSize: 1)
        let publisher = ChannelPublisher(redis: redis)
        try await redis.send("SCRIPT", "FLUSH")
        let first = Channel.conversation("batch-\(UUID().uuidString.prefix(8))")
        let second = Channel.roles("batch-\(UUID().uuidString.prefix(8))")
        let ids = (0..<40).map { _ in UUID() }
        var batch = ids.enumerated().map { index, id in
            ChannelPublisher.Publication(
                eventID: id, channel: index % 2 == 0 ? first : second, frameType: "T", createdAt: Int64(index),
                frameJSON: Array("{\"n\":\(index)}".utf8), ephemeral: false)
        }
        batch.insert(batch[6], at: 20)
        batch.append(
            ChannelPublisher.Publication(
                eventID: UUID(), channel: first, frameType: "TYPING", createdAt: 0, frameJSON: Array("{}".utf8),
                ephemeral: true))
        let outcomes = try await publisher.publish(batch)
        #expect(outcomes.count == batch.count)
        #expect(outcomes[20] == .duplicate)
        #expect(outcomes.last == .ephemeral)
        let offsets = outcomes.compactMap { outcome -> Int64? in
            if case .published(let offset, _) = outcome { return offset }
            return nil
        }
        #expect(offsets == (1...20).flatMap { [Int64($0), Int64($0)] })
        for (channel, parity) in [(first, 0), (second, 1)] {
            let entries = try await redis.send(
                "XRANGE", RedisArgument(Keyspace.ClientChannel.stream(channel)), "-", "+")
            let frames = (entries.array ?? []).compactMap { $0.array?.last?.array?.compactMap(\.string) }.compactMap {
                fields in
                fields.firstIndex(of: "f").map { fields[$0 + 1] }
            }
            #expect(frames == stride(from: parity, to: 40, by: 2).map { "{\"n\":\($0)}" })
        }
        await redis.close()
    }

    /// Issue 14: a stream write that fails leaves no seen marker and no offset behind, so the retry
    /// (Kafka redelivers the event) publishes it instead of dropping it as a duplicate.
    @Test func aFailedStreamWriteIsPublishedOnRetry() async throws {
        try await TestEnvironment.requireRedis()
        let redis = makeClient()
        let publisher = ChannelPublisher(redis: redis)
        try await publisher.prepare()
        let channel = Channel.conversation("xadd-\(UUID().uuidString.prefix(8))")
        let id = UUID()
        // A string where the stream belongs: XADD answers WRONGTYPE inside the script.
        try await redis.send("SET", RedisArgument(Keyspace.ClientChannel.stream(channel)), "not a stream")
        await #expect(throws: RedisError.self) {
            try await publishOne(
                publisher, eventID: id, channel: channel, frameType: "T", createdAt: 1, frameJSON: "{}",
                ephemeral: false)
        }
        #expect(
            try await redis.send("EXISTS", RedisArgument(Keyspace.ClientChannel.seen(channel, eventID: id))).integer
                == 0)
        #expect(
            try await redis.send("HGET", RedisArgument(Keyspace.ClientChannel.meta(channel)), "offset").string == nil)
        try await redis.send("DEL", RedisArgument(Keyspace.ClientChannel.stream(channel)))
        let retried = try await publishOne(
            publisher, eventID: id, channel: channel, frameType: "T", createdAt: 1, frameJSON: "{}", ephemeral: false)
        guard case .published(let offset, _) = retried else {
            Issue.record("the retry was not published: \(retried)")
            return
        }
        #expect(offset == 1)
        #expect(
            try await publishOne(
                publisher, eventID: id, channel: channel, frameType: "T", createdAt: 1, frameJSON: "{}",
                ephemeral: false) == .duplicate)
        await redis.close()
    }

    /// The notifier is ready only while Redis' policy is noeviction (docs/reliability.md).
    @Test func readinessFollowsTheEvictionPolicy() async throws {
        try await TestEnvironment.requireRedis()
        let redis = makeClient()
        let publisher = ChannelPublisher(redis: redis)
        let check = EvictionPolicyCheck(publisher: publisher, logger: logger)
        let original = try await publisher.evictionPolicy()
        #expect(original == ChannelPublisher.requiredEvictionPolicy)
        #expect(await check.isSafe())
        try await redis.send("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        let evicting = await check.isSafe()
        let reported = try? await publisher.evictionPolicy()
        try await redis.send("CONFIG", "SET", "maxmemory-policy", RedisArgument(original))
        #expect(!evicting)
        #expect(reported == "allkeys-lru")
        #expect(await check.isSafe())
        await redis.close()
    }
}
