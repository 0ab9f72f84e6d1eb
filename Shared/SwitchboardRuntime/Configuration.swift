import ArgumentParser
import Foundation
import SwitchboardRedis

/// The six services, with the HTTP port each listens on by default (for /healthz, /readyz, /metrics;
/// the gateway also serves clients there).
public enum ServiceKind: String, Sendable, CaseIterable {
    case gateway, orchestrator, agentWorker = "agent-worker", voiceWorker = "voice-worker",
        workflowRunner = "workflow-runner", notifier

    public var defaultHTTPPort: Int {
        switch self {
        case .gateway: 8080
        case .orchestrator: 8081
        case .agentWorker: 8082
        case .voiceWorker: 8083
        case .workflowRunner: 8084
        case .notifier: 8085
        }
    }
}

/// Settings every service shares. Each comes from a flag, else a `SWITCHBOARD_*` environment variable,
/// else the default documented here and in docs/configuration.md.
public struct SwitchboardConfiguration: Sendable {
    public var service: ServiceKind
    /// SWITCHBOARD_KAFKA_BROKERS, --kafka-brokers
    public var kafkaBrokers = "127.0.0.1:9092"
    /// SWITCHBOARD_REDIS_URL, --redis-url
    public var redisURL = "redis://127.0.0.1:6390"
    /// SWITCHBOARD_POSTGRES_URL, --postgres-url
    public var postgresURL = "postgres://switchboard:switchboard@127.0.0.1:5440/switchboard"
    /// SWITCHBOARD_JWT_SECRET, --jwt-secret. The default is for development only; the services warn.
    public var jwtSecret = SwitchboardConfiguration.developmentSecret
    /// SWITCHBOARD_INSTANCE_ID, --instance-id (default: service name, host name and process id)
    public var instanceID: String
    /// SWITCHBOARD_HTTP_HOST, --http-host
    public var httpHost = "0.0.0.0"
    /// SWITCHBOARD_HTTP_PORT, --http-port (default per service: 8080 gateway … 8085 notifier)
    public var httpPort: Int
    /// SWITCHBOARD_LOG_LEVEL, --log-level (trace, debug, info, notice, warning, error, critical)
    public var logLevel = "info"
    /// SWITCHBOARD_LOG_FORMAT, --log-format (json or text)
    public var logFormat = "json"
    /// SWITCHBOARD_KAFKA_FETCH_WAIT_MS: how long an interactive group's fetch waits at the broker (the
    /// orchestrator, agent-worker, notifier): the most a message waits per hop on an idle Tansu.
    public var kafkaFetchWaitMilliseconds = 15
    /// SWITCHBOARD_KAFKA_STEADY_FETCH_WAIT_MS: the same for steady groups (voice-worker, workflow-runner).
    public var kafkaSteadyFetchWaitMilliseconds = 100
    /// SWITCHBOARD_KAFKA_FETCH_MIN_BYTES: bytes an interactive group's fetch waits for (within its wait)
    /// before it is answered: more than 1 makes a busy consumer's fetches fewer and larger.
    public var kafkaFetchMinBytes = 1
    /// SWITCHBOARD_KAFKA_BACKGROUND_FETCH_WAIT_MS: the same for background groups (history).
    public var kafkaBackgroundFetchWaitMilliseconds = 1000
    /// SWITCHBOARD_KAFKA_LINGER_MS: how long a producer gathers messages into one produce request.
    public var kafkaLingerMilliseconds = 2

    public static let developmentSecret = "switchboard-development-secret-not-for-production"

    public init(service: ServiceKind) {
        self.service = service
        self.httpPort = service.defaultHTTPPort
        self.instanceID = "\(service.rawValue)-\(ProcessInfo.processInfo.hostName)-\(getpid())"
    }

    public var redisEndpoint: RedisEndpoint {
        get throws {
            guard let endpoint = RedisEndpoint(url: redisURL) else {
                throw ConfigurationError("SWITCHBOARD_REDIS_URL is not a redis:// URL: \(redisURL)")
            }
            return endpoint
        }
    }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The flags of `SwitchboardConfiguration`, shared by every service's command line.
public struct CommonOptions: ParsableArguments {
    @Option(help: "Kafka bootstrap servers, host:port[,host:port] (env SWITCHBOARD_KAFKA_BROKERS; default 127.0.0.1:9092).")
    public var kafkaBrokers: String?
    @Option(help: "Redis URL (env SWITCHBOARD_REDIS_URL; default redis://127.0.0.1:6390).")
    public var redisURL: String?
    @Option(help: "PostgreSQL URL (env SWITCHBOARD_POSTGRES_URL).")
    public var postgresURL: String?
    @Option(help: "HS256 secret for JWTs (env SWITCHBOARD_JWT_SECRET).")
    public var jwtSecret: String?
    @Option(help: "This instance's id in logs, events and routing tables (env SWITCHBOARD_INSTANCE_ID).")
    public var instanceID: String?
    @Option(help: "Address to listen on (env SWITCHBOARD_HTTP_HOST; default 0.0.0.0).")
    public var httpHost: String?
    @Option(help: "HTTP port for /healthz, /readyz, /metrics (env SWITCHBOARD_HTTP_PORT; default per service).")
    public var httpPort: Int?
    @Option(help: "Log level (env SWITCHBOARD_LOG_LEVEL; default info).")
    public var logLevel: String?
    @Option(help: "Log format, json or text (env SWITCHBOARD_LOG_FORMAT; default json).")
    public var logFormat: String?

    public init() {}

    /// Flags win over the environment, which wins over defaults.
    public func resolve(
        service: ServiceKind, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> SwitchboardConfiguration {
        var configuration = SwitchboardConfiguration(service: service)
        func pick(_ flag: String?, _ variable: String) -> String? {
            if let flag { return flag }
            if let value = environment["SWITCHBOARD_\(variable)"], !value.isEmpty { return value }
            return nil
        }
        if let value = pick(kafkaBrokers, "KAFKA_BROKERS") { configuration.kafkaBrokers = value }
        if let value = pick(redisURL, "REDIS_URL") { configuration.redisURL = value }
        if let value = pick(postgresURL, "POSTGRES_URL") { configuration.postgresURL = value }
        if let value = pick(jwtSecret, "JWT_SECRET") {
            guard value.utf8.count >= TokenAuthority.minimumSecretBytes else {
                throw ConfigurationError("SWITCHBOARD_JWT_SECRET must be at least \(TokenAuthority.minimumSecretBytes) bytes (HS256 keys shorter than the hash are weak)")
            }
            configuration.jwtSecret = value
        }
        if let value = pick(instanceID, "INSTANCE_ID") { configuration.instanceID = value }
        if let value = pick(httpHost, "HTTP_HOST") { configuration.httpHost = value }
        if let value = pick(httpPort.map(String.init), "HTTP_PORT") {
            guard let port = Int(value), (0...65535).contains(port) else {
                throw ConfigurationError("SWITCHBOARD_HTTP_PORT must be a port number, got \(value)")
            }
            configuration.httpPort = port
        }
        if let value = pick(logLevel, "LOG_LEVEL") {
            guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(value) else {
                throw ConfigurationError("unknown log level \(value)")
            }
            configuration.logLevel = value
        }
        if let value = pick(logFormat, "LOG_FORMAT") {
            guard value == "json" || value == "text" else { throw ConfigurationError("log format must be json or text") }
            configuration.logFormat = value
        }
        for (variable, keyPath, range) in [
            ("KAFKA_FETCH_WAIT_MS", \SwitchboardConfiguration.kafkaFetchWaitMilliseconds, 1...60_000),
            ("KAFKA_FETCH_MIN_BYTES", \SwitchboardConfiguration.kafkaFetchMinBytes, 1...100_000_000),
            ("KAFKA_STEADY_FETCH_WAIT_MS", \SwitchboardConfiguration.kafkaSteadyFetchWaitMilliseconds, 1...60_000),
            ("KAFKA_BACKGROUND_FETCH_WAIT_MS", \SwitchboardConfiguration.kafkaBackgroundFetchWaitMilliseconds, 1...60_000),
            ("KAFKA_LINGER_MS", \SwitchboardConfiguration.kafkaLingerMilliseconds, 0...60_000),
        ] {
            guard let raw = pick(nil, variable) else { continue }
            guard let value = Int(raw), range.contains(value) else {
                throw ConfigurationError("SWITCHBOARD_\(variable) must be a whole number in \(range), got \(raw)")
            }
            configuration[keyPath: keyPath] = value
        }
        _ = try configuration.redisEndpoint
        return configuration
    }
}

/// Reads a service-specific setting: the flag, else `SWITCHBOARD_<variable>`, else the default.
public func setting<T: LosslessStringConvertible>(
    _ flag: T?, environment variable: String, default defaultValue: T,
    environment: [String: String] = ProcessInfo.processInfo.environment
) throws -> T {
    if let flag { return flag }
    guard let raw = environment["SWITCHBOARD_\(variable)"], !raw.isEmpty else { return defaultValue }
    guard let value = T(raw) else { throw ConfigurationError("SWITCHBOARD_\(variable) is not valid: \(raw)") }
    return value
}
