import Foundation
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardTestSupport
import Testing

@testable import AgentWorker

/// The agent task journal against a real Redis: one attempt at a time, writes fenced by the lease, a
/// done-marker that outlives the journal (issue 14 item 9).
@Suite(.serialized, .timeLimit(.minutes(2)))
struct TaskJournalIntegrationTests {
    func makeJournal() -> (TaskJournal, RedisClient) {
        let redis = RedisClient(
            configuration: RedisClientConfiguration(endpoint: TestEnvironment.redisEndpoint),
            logger: TestEnvironment.logger)
        return (TaskJournal(redis: redis), redis)
    }

    @Test func aResumedAttemptFindsTheChunksAndAFinishedTaskIsDone() async throws {
        try await TestEnvironment.requireRedis()
        let (journal, redis) = makeJournal()
        let taskID = "test-\(UUID())"
        // The first attempt records two batches, then dies (its lease is dropped as if it had expired).
        try await journal.withLease(taskID: taskID) { lease in
            #expect(try await lease.progress() == TaskProgress())
            try await lease.record(["Alex ", "here. "])
            try await lease.record(["你好 👨‍👩‍👧"], complete: true)
        }
        try await redis.send("DEL", RedisArgument(Keyspace.Task.lease(taskID)))
        try await journal.withLease(taskID: taskID) { lease in
            #expect(try await lease.progress() == TaskProgress(chunks: ["Alex ", "here. ", "你好 👨‍👩‍👧"], generated: true))
            try await lease.finish()
        }
        try await journal.withLease(taskID: taskID) { lease in
            #expect(try await lease.progress() == TaskProgress(done: true))
            try await lease.release()
        }
        let ttl = try await redis.send("TTL", RedisArgument(Keyspace.Task.done(taskID))).integer ?? 0
        #expect(ttl > 0 && ttl <= Int64(TaskJournal.doneTTLSeconds))
        #expect(try await redis.send("EXISTS", RedisArgument(Keyspace.Task.chunks(taskID))).integer == 0)
        try await redis.send("DEL", RedisArgument(Keyspace.Task.done(taskID)))
        await redis.close()
    }

    /// A task delivered twice at once (an orchestrator that dispatched it again) runs once at a time:
    /// the second attempt waits for the first's lease and then finds its work.
    @Test func aSecondAttemptWaitsForTheFirst() async throws {
        try await TestEnvironment.requireRedis()
        let (journal, redis) = makeJournal()
        let taskID = "test-\(UUID())"
        let order = Locked<[String]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await journal.withLease(taskID: taskID) { lease in
                    order.withLock { $0.append("first in") }
                    try await Task.sleep(for: .milliseconds(600))
                    try await lease.record(["whole answer"], complete: true)
                    order.withLock { $0.append("first out") }
                    try await lease.finish()
                }
            }
            try await Task.sleep(for: .milliseconds(100))
            group.addTask {
                try await journal.withLease(taskID: taskID) { lease in
                    order.withLock { $0.append("second in") }
                    #expect(try await lease.progress().done)
                    try await lease.release()
                }
            }
            try await group.waitForAll()
        }
        #expect(order.withLock { $0 } == ["first in", "first out", "second in"])
        try await redis.send("DEL", RedisArgument(Keyspace.Task.done(taskID)))
        await redis.close()
    }

    /// An attempt whose lease passed to another (it stalled past the TTL) can no longer write.
    @Test func anAttemptThatLostItsLeaseCannotRecord() async throws {
        try await TestEnvironment.requireRedis()
        let (journal, redis) = makeJournal()
        let taskID = "test-\(UUID())"
        await #expect(throws: TaskJournal.LeaseLost.self) {
            try await journal.withLease(taskID: taskID) { lease in
                try await lease.record(["mine "])
                try await redis.send("SET", RedisArgument(Keyspace.Task.lease(taskID)), "another attempt")
                try await lease.record(["too late"])
            }
        }
        #expect(
            try await redis.send("LRANGE", RedisArgument(Keyspace.Task.chunks(taskID)), "0", "-1").array?.compactMap(
                \.string) == ["mine "])
        // The failed attempt left the other's lease alone.
        #expect(try await redis.send("GET", RedisArgument(Keyspace.Task.lease(taskID))).string == "another attempt")
        try await redis.send(
            "DEL", RedisArgument(Keyspace.Task.lease(taskID)), RedisArgument(Keyspace.Task.chunks(taskID)))
        await redis.close()
    }
}
