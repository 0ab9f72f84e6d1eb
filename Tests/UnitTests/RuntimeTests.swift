import Foundation
import ArgumentParser
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import Testing

@Suite struct ConfigurationTests {
    /// A secret of its own: the services start with no other (issue 14 item 3).
    static let base = ["SWITCHBOARD_JWT_SECRET": "unit-test-secret-0123456789abcdef-xyz"]

    /// Issue 13 item 8: each group fetches as its latency needs; the waits come from the environment.
    @Test func consumerGroupsFetchAsTheirLatencyNeeds() throws {
        #expect(ConsumerGroups.latency(of: ConsumerGroups.history) == .background)
        #expect(ConsumerGroups.latency(of: ConsumerGroups.voiceWorker) == .steady)
        for group in [ConsumerGroups.notifier, ConsumerGroups.orchestrator, ConsumerGroups.agentWorker] {
            #expect(ConsumerGroups.latency(of: group) == .interactive)
        }
        let defaults = try CommonOptions.parse([]).resolve(service: .notifier, environment: Self.base)
        var consumer = KafkaConsumerConfiguration(client: KafkaClientConfiguration(), groupID: "g")
        consumer.apply(.interactive, configuration: defaults)
        #expect(consumer.fetchWaitMaxMilliseconds == defaults.kafkaFetchWaitMilliseconds)
        #expect(consumer.fetchMinBytes == defaults.kafkaFetchMinBytes)
        consumer.apply(.steady, configuration: defaults)
        #expect(consumer.fetchWaitMaxMilliseconds == defaults.kafkaSteadyFetchWaitMilliseconds)
        consumer.apply(.background, configuration: defaults)
        #expect(consumer.fetchWaitMaxMilliseconds == 1000)
        #expect(consumer.fetchMinBytes == 64 * 1024)

        let environment = Self.base.merging([
            "SWITCHBOARD_KAFKA_FETCH_WAIT_MS": "7", "SWITCHBOARD_KAFKA_BACKGROUND_FETCH_WAIT_MS": "2500",
            "SWITCHBOARD_KAFKA_LINGER_MS": "0", "SWITCHBOARD_KAFKA_FETCH_MIN_BYTES": "512",
        ]) { $1 }
        let set = try CommonOptions.parse([]).resolve(service: .notifier, environment: environment)
        #expect(set.kafkaFetchWaitMilliseconds == 7)
        #expect(set.kafkaBackgroundFetchWaitMilliseconds == 2500)
        #expect(set.kafkaLingerMilliseconds == 0)
        #expect(set.kafkaFetchMinBytes == 512)
        for bad in ["0", "-1", "soon", "60001"] {
            #expect(throws: ConfigurationError.self) {
                try CommonOptions.parse([]).resolve(
                    service: .notifier, environment: Self.base.merging(["SWITCHBOARD_KAFKA_FETCH_WAIT_MS": bad]) { $1 })
            }
        }
    }

    @Test func defaultsApplyWithNothingSetInDevelopmentMode() throws {
        let configuration = try CommonOptions.parse([]).resolve(
            service: .notifier, environment: ["SWITCHBOARD_DEVELOPMENT_MODE": "1"])
        #expect(configuration.kafkaBrokers == "127.0.0.1:9092")
        #expect(configuration.redisURL == "redis://127.0.0.1:6390")
        #expect(configuration.httpPort == 8085)
        #expect(configuration.adminPort == 9085 && configuration.adminHost == "127.0.0.1")
        #expect(configuration.logFormat == "json")
        #expect(configuration.jwtSecret == SwitchboardConfiguration.developmentSecret)
        #expect(configuration.tokenPolicy == TokenPolicy())
        #expect(
            try CommonOptions.parse(["--development-mode"]).resolve(service: .gateway, environment: [:]).developmentMode
        )
    }

    @Test func environmentOverridesDefaultsAndFlagsOverrideEnvironment() throws {
        let environment = Self.base.merging([
            "SWITCHBOARD_KAFKA_BROKERS": "k1:9092,k2:9092", "SWITCHBOARD_HTTP_PORT": "9999",
            "SWITCHBOARD_REDIS_URL": "redis://cache:6379/2", "SWITCHBOARD_LOG_LEVEL": "debug",
        ]) { $1 }
        var options = try CommonOptions.parse(["--http-port", "7000"])
        let configuration = try options.resolve(service: .gateway, environment: environment)
        #expect(configuration.kafkaBrokers == "k1:9092,k2:9092")
        #expect(configuration.httpPort == 7000)
        #expect(configuration.logLevel == "debug")
        let endpoint = try configuration.redisEndpoint
        #expect(endpoint.host == "cache" && endpoint.port == 6379 && endpoint.database == 2)
        options = try CommonOptions.parse([])
        #expect(try options.resolve(service: .gateway, environment: environment).httpPort == 9999)
    }

    @Test(arguments: [
        ["SWITCHBOARD_HTTP_PORT": "eighty"], ["SWITCHBOARD_HTTP_PORT": "70000"], ["SWITCHBOARD_LOG_LEVEL": "loud"],
        ["SWITCHBOARD_REDIS_URL": "http://x"], ["SWITCHBOARD_JWT_SECRET": "short"], ["SWITCHBOARD_LOG_FORMAT": "xml"],
        ["SWITCHBOARD_ADMIN_PORT": "-1"], ["SWITCHBOARD_ADMIN_PORT": "8080"],
        ["SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS": "5"],
        ["SWITCHBOARD_DEVELOPMENT_MODE": "maybe"], ["SWITCHBOARD_DEVICE_TOKEN_SECRET": "short"],
    ])
    func invalidSettingsAreRefusedWithTheirName(_ environment: [String: String]) throws {
        // Valid otherwise, so the one setting is what is refused.
        #expect(try CommonOptions.parse([]).resolve(service: .gateway, environment: Self.base).service == .gateway)
        let name = environment.keys.first!
        #expect {
            try CommonOptions.parse([]).resolve(service: .gateway, environment: Self.base.merging(environment) { $1 })
        } throws: { error in
            (error as? ConfigurationError)?.description.contains(name) == true
        }
    }

    @Test func serviceSettingsReadTheirVariable() throws {
        #expect(
            try setting(Optional<Double>.none, environment: "AGENT_TOKEN_RATE", default: 40, environment: [:]) == 40)
        #expect(
            try setting(
                Optional<Double>.none, environment: "AGENT_TOKEN_RATE", default: 40,
                environment: ["SWITCHBOARD_AGENT_TOKEN_RATE": "0"]) == 0)
        #expect(
            try setting(
                Optional(5.0), environment: "AGENT_TOKEN_RATE", default: 40,
                environment: ["SWITCHBOARD_AGENT_TOKEN_RATE": "0"]) == 5)
        #expect(throws: ConfigurationError.self) {
            try setting(Optional<Int>.none, environment: "X", default: 1, environment: ["SWITCHBOARD_X": "one"])
        }
    }
}

@Suite struct BackoffTests {
    @Test func ceilingGrowsExponentiallyUpToTheCap() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(2), factor: 2)
        #expect(backoff.ceiling(attempt: 0) == .milliseconds(100))
        #expect(backoff.ceiling(attempt: 1) == .milliseconds(200))
        #expect(backoff.ceiling(attempt: 3) == .milliseconds(800))
        #expect(backoff.ceiling(attempt: 5) == .seconds(2))
        #expect(backoff.ceiling(attempt: 500) == .seconds(2))
    }

    @Test func fullJitterStaysWithinTheCeilingAndSpreads() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        var generator = SystemRandomNumberGenerator()
        let delays = (0..<500).map { _ in backoff.delay(attempt: 4, using: &generator) }
        #expect(delays.allSatisfy { $0 >= .zero && $0 <= .milliseconds(1600) })
        #expect(Set(delays).count > 400)
        #expect(delays.contains { $0 < .milliseconds(400) } && delays.contains { $0 > .milliseconds(1200) })
    }
}

@Suite struct TokenAuthorityTests {
    let secret = "unit-test-secret-0123456789abcdef-xyz"

    @Test func mintedTokensVerify() async throws {
        let authority = try await TokenAuthority(secret: secret)
        let token = try await authority.mint(user: "alice", roles: ["admin"])
        let claims = try await authority.verify(token)
        #expect(claims.userID == "alice" && claims.isPrivileged)
    }

    @Test func expiredForgedAndMalformedTokensAreRefused() async throws {
        let authority = try await TokenAuthority(secret: secret)
        let expired = try await authority.mint(user: "alice", lifetime: .seconds(-60))
        await #expect(throws: AuthError.self) { try await authority.verify(expired) }
        let other = try await TokenAuthority(secret: "another-secret-0123456789abcdef-xyz")
        let forged = try await other.mint(user: "alice")
        await #expect(throws: AuthError.self) { try await authority.verify(forged) }
        await #expect(throws: AuthError.self) { try await authority.verify("not.a.token") }
        await #expect(throws: AuthError.self) { try await authority.verify("") }
    }

    @Test func shortSecretsAreRefused() async {
        await #expect(throws: AuthError.self) { try await TokenAuthority(secret: "too-short") }
    }
}
