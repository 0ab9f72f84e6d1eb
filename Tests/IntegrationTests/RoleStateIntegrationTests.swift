import Foundation
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// The role state script against a real Redis: legal paths applied, retried paths not repeated,
/// illegal steps refused.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct RoleStateIntegrationTests {
    func withStore(_ body: (RoleStateStore, String) async throws -> Void) async throws {
        try await TestEnvironment.requireRedis()
        let redis = RedisClient(
            configuration: RedisClientConfiguration(endpoint: TestEnvironment.redisEndpoint),
            logger: TestEnvironment.logger)
        let conversation = "roles-\(UUID().uuidString.prefix(8))"
        do {
            try await body(RoleStateStore(redis: redis, logger: TestEnvironment.logger), conversation)
        } catch {
            try? await redis.send("DEL", RedisArgument(Keyspace.Conversation.roles(conversation)))
            await redis.close()
            throw error
        }
        try await redis.send("DEL", RedisArgument(Keyspace.Conversation.roles(conversation)))
        await redis.close()
    }

    typealias Step = RoleStateStore.Step

    @Test func aRunsPathIsAppliedStepByStep() async throws {
        try await withStore { store, conversation in
            let dispatched = try await store.advance(
                conversation: conversation, role: "Kulu", path: [.analyzing, .collaborating, .thinking])
            #expect(
                dispatched.applied == [
                    Step(from: .idle, to: .analyzing), Step(from: .analyzing, to: .collaborating),
                    Step(from: .collaborating, to: .thinking),
                ])
            #expect(dispatched.illegal == nil)
            #expect(
                try await store.advance(conversation: conversation, role: "Kulu", path: [.responding]).applied == [
                    Step(from: .thinking, to: .responding)
                ])
            #expect(try await store.states(conversation: conversation) == ["Kulu": .responding])
            #expect(
                try await store.advance(conversation: conversation, role: "Kulu", path: [.idle]).applied == [
                    Step(from: .responding, to: .idle)
                ])
        }
    }

    @Test func aRetriedPathIsNotAppliedTwice() async throws {
        try await withStore { store, conversation in
            _ = try await store.advance(conversation: conversation, role: "Alex", path: [.analyzing, .thinking])
            let again = try await store.advance(
                conversation: conversation, role: "Alex", path: [.analyzing, .thinking])
            #expect(again.applied.isEmpty && again.illegal == nil)
            #expect(try await store.states(conversation: conversation)["Alex"] == .thinking)
        }
    }

    @Test func anIllegalStepIsRefusedAndTheStateKept() async throws {
        try await withStore { store, conversation in
            // IDLE → RESPONDING is not in seed 000's machine.
            let refused = try await store.advance(conversation: conversation, role: "Emma", path: [.responding])
            #expect(refused.applied.isEmpty)
            #expect(refused.illegal == Step(from: .idle, to: .responding))
            #expect(try await store.states(conversation: conversation)["Emma"] == .idle)
            // Legal steps before the illegal one stay applied; nothing after it is tried.
            let partial = try await store.advance(
                conversation: conversation, role: "Emma", path: [.thinking, .idle, .analyzing])
            #expect(partial.applied == [Step(from: .idle, to: .thinking)])
            #expect(partial.illegal == Step(from: .thinking, to: .idle))
            #expect(try await store.states(conversation: conversation)["Emma"] == .thinking)
        }
    }
}
