import SwitchboardRuntime
import Testing

extension ServiceProcesses {
    /// Runs `body` against the six services started over the test run's Kafka, Redis and PostgreSQL
    /// (the gateway's WebSocket URL and a token authority for its secret), then stops them and expects
    /// every one to exit 0: SIGTERM is a graceful shutdown that finishes in-flight work. Shared by the
    /// end-to-end suites. `redisURL`: the test Redis or the test Redis Cluster; `everyService`: settings
    /// every service gets (a broker of the test's own, a collector).
    public static func withStack(
        tokensPerSecond: Int = 200, gatewayEnvironment: [String: String] = [:],
        orchestratorEnvironment: [String: String] = [:], agentEnvironment: [String: String] = [:],
        voiceEnvironment: [String: String] = [:], runnerEnvironment: [String: String] = [:],
        container: ContainerImage? = nil, redisURL: String = TestEnvironment.redisURL,
        everyService: [String: String] = [:],
        _ body: (ServiceProcesses, String, TokenAuthority) async throws -> Void
    ) async throws {
        try await TestEnvironment.requireKafka()
        if redisURL == TestEnvironment.redisClusterURL {
            try await TestEnvironment.requireRedisCluster()
        } else {
            try await TestEnvironment.requireRedis()
        }
        let stack = try ServiceProcesses(container: container, redisURL: redisURL)
        let gateway = try stack.startAll(
            agentEnvironment: [
                "SWITCHBOARD_AGENT_TOKEN_RATE": "\(tokensPerSecond)", "SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS": "20",
            ].merging(agentEnvironment) { $1 }, gatewayEnvironment: gatewayEnvironment,
            orchestratorEnvironment: orchestratorEnvironment,
            voiceEnvironment: voiceEnvironment, runnerEnvironment: runnerEnvironment, everyService: everyService)
        do {
            try await stack.waitUntilReady()
            let authority = try await TokenAuthority(secret: stack.jwtSecret)
            try await body(stack, "ws://127.0.0.1:\(gateway.httpPort)/ws", authority)
        } catch {
            await stack.stopAll()
            throw error
        }
        let codes = await stack.stopAll()
        for (name, code) in codes {
            let service = String(name.split(separator: ":")[0])
            #expect(code == 0, "\(name) exited \(code); log:\n\(stack.log(of: service).suffix(2000))")
        }
    }
}
