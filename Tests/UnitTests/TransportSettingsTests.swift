import ArgumentParser
import Foundation
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardStore
import Testing

/// How the URLs and settings of the dependencies carry credentials and TLS (issue 14 item 4).
struct TransportSettingsTests {
    @Test func aRedisURLCarriesUserAndPasswordAndNeverPrintsThePassword() throws {
        let acl = try #require(RedisEndpoint(url: "redis://switchboard:s%40cret@redis.internal:6380/2"))
        #expect(acl.username == "switchboard" && acl.password == "s@cret")
        #expect(acl.host == "redis.internal" && acl.port == 6380 && acl.database == 2)
        #expect(acl.description == "redis://switchboard:***@redis.internal:6380/2")
        let requirepass = try #require(RedisEndpoint(url: "redis://:only-a-password@127.0.0.1"))
        #expect(requirepass.username == nil && requirepass.password == "only-a-password")
        #expect(RedisEndpoint(url: "redis://127.0.0.1:6390")?.password == nil)
        let tls = try #require(RedisEndpoint(url: "rediss://:pw@redis.internal:6380/1?ca_file=/etc/sb/ca%20file.pem"))
        #expect(tls.usesTLS && tls.caFile == "/etc/sb/ca file.pem" && tls.port == 6380 && tls.database == 1)
        #expect(tls.description == "rediss://:***@redis.internal:6380/1")
        #expect(RedisEndpoint(url: "rediss://redis.internal")?.caFile == nil)
        // Unknown options, or a CA file for a clear-text URL, are refused rather than ignored.
        #expect(RedisEndpoint(url: "rediss://redis.internal?verify=none") == nil)
        #expect(RedisEndpoint(url: "redis://redis.internal?ca_file=/ca.pem") == nil)
    }

    @Test func kafkaPropertiesReachEveryClientOfTheProcess() throws {
        let configuration = try CommonOptions.parse([]).resolve(
            service: .notifier,
            environment: [
                "SWITCHBOARD_DEVELOPMENT_MODE": "1",
                "SWITCHBOARD_KAFKA_PROPERTIES":
                    "security.protocol=SASL_SSL; sasl.mechanism=SCRAM-SHA-512;sasl.username=sb",
            ])
        #expect(
            configuration.kafkaClient.extraProperties == [
                "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "sb",
            ])
        #expect(throws: ConfigurationError.self) {
            try CommonOptions.parse([]).resolve(
                service: .notifier,
                environment: ["SWITCHBOARD_DEVELOPMENT_MODE": "1", "SWITCHBOARD_KAFKA_PROPERTIES": "no-equals-sign"])
        }
    }

    @Test func thePostgreSQLURLsSSLModeIsHonouredAndAnUnknownOneRefused() throws {
        #expect(try StoreConfiguration(url: "postgres://u:p@db/sb").sslMode == .disable)
        #expect(try StoreConfiguration(url: "postgres://u:p@db/sb?sslmode=require").sslMode == .require)
        #expect(try StoreConfiguration(url: "postgresql://u:p@db/sb?sslmode=verify-full").sslMode == .verifyFull)
        #expect(throws: StoreError.self) { try StoreConfiguration(url: "postgres://u:p@db/sb?sslmode=allow-anything") }
    }
}
