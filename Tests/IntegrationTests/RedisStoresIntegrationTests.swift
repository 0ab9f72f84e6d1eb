import Foundation
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTestSupport
import SwitchboardVoice
import Testing

/// The typed stores over keys one service writes and another reads, against a real Redis.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct RedisStoresIntegrationTests {
    func withRedis(deleting keys: [String], _ body: (RedisClient) async throws -> Void) async throws {
        try await TestEnvironment.requireRedis()
        let redis = RedisClient(
            configuration: RedisClientConfiguration(endpoint: TestEnvironment.redisEndpoint),
            logger: TestEnvironment.logger)
        let cleanUp = { _ = try? await redis.send(["DEL"] + keys.map { RedisArgument($0) }) }
        do {
            try await body(redis)
        } catch {
            await cleanUp()
            await redis.close()
            throw error
        }
        await cleanUp()
        await redis.close()
    }

    /// What the gateway writes at hello is what a voice-worker reads, tools included; a closed session has no route.
    @Test func aVoiceRouteIsReadAsItsGatewayWroteIt() async throws {
        let session = "route-\(UUID().uuidString.prefix(8))"
        try await withRedis(deleting: [Keyspace.Voice.route(session)]) { redis in
            let routes = VoiceRouteStore(redis: redis)
            #expect(try await routes.route(session: session) == nil)
            let route = VoiceRoute(
                gateway: "gateway-7", userId: "alice", conversationId: "device-d1", deviceId: "d1",
                uplink: AudioFormat(sampleRate: 24_000, frameDurationMilliseconds: 20))
            try await routes.open(route, session: session, ttlSeconds: 60)
            #expect(try await routes.route(session: session) == route)
            #expect(try await routes.tools(session: session) == [])
            let ttl = try await redis.send("TTL", RedisArgument(Keyspace.Voice.route(session))).integer ?? 0
            #expect(ttl > 0 && ttl <= 60)

            let tools = [DeviceTool(name: "self.light.set_power", description: "turns the light on or off")]
            try await routes.storeTools(tools, session: session)
            #expect(try await routes.tools(session: session) == tools)
            #expect(try await routes.route(session: session) == route)

            try await routes.refresh(session: session, ttlSeconds: 300)
            #expect((try await redis.send("TTL", RedisArgument(Keyspace.Voice.route(session))).integer ?? 0) > 60)
            try await routes.close(session: session)
            #expect(try await routes.route(session: session) == nil)
        }
    }

    /// A stopped run is seen by a task that starts later (the key) and by those running (the message).
    @Test func aStoppedRunIsSeenByKeyAndByMessage() async throws {
        let runID = "run-\(UUID().uuidString.prefix(8))"
        try await withRedis(deleting: [Keyspace.Run.stopped(runID)]) { redis in
            let control = RunControl(redis: redis)
            #expect(try await control.isStopped(runID: runID) == false)
            let subscriber = RedisSubscriber(endpoint: TestEnvironment.redisEndpoint, logger: TestEnvironment.logger)
            let group = ServiceGroup(services: [subscriber], logger: TestEnvironment.logger)
            let stopped = Locked<[String]>([])
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                _ = try await subscriber.subscribe(RunControl.stopChannel) { message in
                    stopped.withLock { $0.append(String(decoding: message, as: UTF8.self)) }
                }
                try await control.stop(runID: runID)
                // Other tests' runs may be stopped on the same channel meanwhile.
                #expect(await eventually { stopped.withLock { $0.contains(runID) } })
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            }
            #expect(try await control.isStopped(runID: runID))
        }
    }
}
