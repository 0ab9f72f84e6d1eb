import ArgumentParser
import Foundation
import SwitchboardKafka
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

    /// `/metrics` and `/readyz` are served here, apart from the public port (issue 14 item 5).
    public var defaultAdminPort: Int { defaultHTTPPort + Self.adminPortOffset }
    /// The admin port is the public one + 1000 unless set: 9080 gateway … 9085 notifier.
    public static let adminPortOffset = 1000
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
    /// SWITCHBOARD_DEVELOPMENT_MODE=1, --development-mode: a laptop, not a deployment. Only then may
    /// the JWT secret be left unset (the built-in development secret) or be a published one.
    public var developmentMode = false
    /// SWITCHBOARD_JWT_SECRET, --jwt-secret: required outside development mode (`resolve` checks).
    public var jwtSecret = SwitchboardConfiguration.developmentSecret
    /// SWITCHBOARD_JWT_ISSUER, SWITCHBOARD_JWT_AUDIENCE, SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS.
    public var tokenPolicy = TokenPolicy()
    /// SWITCHBOARD_DEVICE_TOKEN_SECRET: the secret device tokens are keyed from; nil: the JWT secret's
    /// (always under a label of their own, never the JWT key itself).
    public var deviceTokenSecret: String?
    /// SWITCHBOARD_ADMIN_HOST, --admin-host: where `/metrics` and `/readyz` listen.
    public var adminHost = "127.0.0.1"
    /// SWITCHBOARD_ADMIN_PORT, --admin-port (default per service: 9080 gateway … 9085 notifier); 0 picks a free one.
    public var adminPort: Int
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
    /// SWITCHBOARD_KAFKA_PROPERTIES: extra librdkafka properties for every producer and consumer, as
    /// `key=value` pairs separated by `;` (TLS and SASL: `security.protocol=SASL_SSL;sasl.mechanism=…`).
    public var kafkaProperties: [String: String] = [:]
    /// librdkafka's `debug` contexts for every client of the service (SWITCHBOARD_KAFKA_DEBUG).
    public var kafkaDebug: String?
    /// SWITCHBOARD_OTEL_ENDPOINT: an OpenTelemetry collector's OTLP/HTTP base URL
    /// (`http://collector:4318`); spans are exported there when set, and not made at all when not.
    public var otelEndpoint: String?

    public static let developmentSecret = "switchboard-development-secret-not-for-production"
    /// Secrets anyone can read in this repository: the built-in one, the Kubernetes placeholder
    /// (deploy/k8s/secret.yaml) and compose's former default. Refused outside development mode.
    public static let publishedSecrets: Set<String> = [
        developmentSecret, "REPLACE-ME-with-a-long-random-secret", "switchboard-development-secret",
    ]

    /// The secret device tokens are derived from.
    public var deviceKeySecret: String { deviceTokenSecret ?? jwtSecret }

    public init(service: ServiceKind) {
        self.service = service
        self.httpPort = service.defaultHTTPPort
        self.adminPort = service.defaultAdminPort
        self.instanceID = "\(service.rawValue)-\(ProcessInfo.processInfo.hostName)-\(getpid())"
    }

    /// Every producer and consumer of this process: its brokers, its id, and the operator's properties.
    public var kafkaClient: KafkaClientConfiguration {
        var client = KafkaClientConfiguration(bootstrapServers: kafkaBrokers, clientID: instanceID)
        client.extraProperties = kafkaProperties
        client.debug = kafkaDebug
        return client
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
    @Option(
        help: "Kafka bootstrap servers, host:port[,host:port] (env SWITCHBOARD_KAFKA_BROKERS; default 127.0.0.1:9092).")
    public var kafkaBrokers: String?
    @Option(help: "Redis URL (env SWITCHBOARD_REDIS_URL; default redis://127.0.0.1:6390).")
    public var redisURL: String?
    @Option(help: "PostgreSQL URL (env SWITCHBOARD_POSTGRES_URL).")
    public var postgresURL: String?
    @Option(
        help: "HS256 secret for JWTs, at least 32 bytes (env SWITCHBOARD_JWT_SECRET; required unless development mode)."
    )
    public var jwtSecret: String?
    @Flag(help: "Development mode: the built-in JWT secret is allowed (env SWITCHBOARD_DEVELOPMENT_MODE=1).")
    public var developmentMode = false
    @Option(
        help: "Address of the admin listener for /metrics and /readyz (env SWITCHBOARD_ADMIN_HOST; default 127.0.0.1).")
    public var adminHost: String?
    @Option(help: "Admin port for /metrics, /readyz, /healthz (env SWITCHBOARD_ADMIN_PORT; default HTTP port + 1000).")
    public var adminPort: Int?
    @Option(help: "This instance's id in logs, events and routing tables (env SWITCHBOARD_INSTANCE_ID).")
    public var instanceID: String?
    @Option(help: "Address to listen on (env SWITCHBOARD_HTTP_HOST; default 0.0.0.0).")
    public var httpHost: String?
    @Option(help: "Public HTTP port, with /healthz (env SWITCHBOARD_HTTP_PORT; default per service).")
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
        if let value = pick(developmentMode ? "1" : nil, "DEVELOPMENT_MODE") {
            guard let on = Self.flag(value) else {
                throw ConfigurationError("SWITCHBOARD_DEVELOPMENT_MODE must be 1 or 0, got \(value)")
            }
            configuration.developmentMode = on
        }
        configuration.jwtSecret = try Self.secret(
            pick(jwtSecret, "JWT_SECRET"), variable: "SWITCHBOARD_JWT_SECRET",
            developmentMode: configuration.developmentMode)
        if let value = pick(nil, "DEVICE_TOKEN_SECRET") {
            configuration.deviceTokenSecret = try Self.secret(
                value, variable: "SWITCHBOARD_DEVICE_TOKEN_SECRET", developmentMode: configuration.developmentMode)
        }
        configuration.tokenPolicy.issuer = pick(nil, "JWT_ISSUER")
        configuration.tokenPolicy.audience = pick(nil, "JWT_AUDIENCE")
        if let value = pick(nil, "JWT_MAX_LIFETIME_SECONDS") {
            guard let seconds = Int(value), (60...(365 * 24 * 3600)).contains(seconds) else {
                throw ConfigurationError(
                    "SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS must be 60 … 31536000 seconds, got \(value)")
            }
            configuration.tokenPolicy.maxLifetimeSeconds = seconds
        }
        if let value = pick(adminHost, "ADMIN_HOST") { configuration.adminHost = value }
        if let value = pick(adminPort.map(String.init), "ADMIN_PORT") {
            guard let port = Int(value), (0...65535).contains(port) else {
                throw ConfigurationError("SWITCHBOARD_ADMIN_PORT must be a port number, got \(value)")
            }
            configuration.adminPort = port
        }
        if let value = pick(instanceID, "INSTANCE_ID") { configuration.instanceID = value }
        if let value = pick(httpHost, "HTTP_HOST") { configuration.httpHost = value }
        if let value = pick(httpPort.map(String.init), "HTTP_PORT") {
            guard let port = Int(value), (0...65535).contains(port) else {
                throw ConfigurationError("SWITCHBOARD_HTTP_PORT must be a port number, got \(value)")
            }
            configuration.httpPort = port
        }
        if let value = pick(nil, "KAFKA_PROPERTIES") { configuration.kafkaProperties = try Self.kafkaProperties(value) }
        configuration.kafkaDebug = pick(nil, "KAFKA_DEBUG")
        if let value = pick(nil, "OTEL_ENDPOINT") {
            guard value.hasPrefix("http://") || value.hasPrefix("https://") else {
                throw ConfigurationError("SWITCHBOARD_OTEL_ENDPOINT must be an http(s):// URL, got \(value)")
            }
            configuration.otelEndpoint = value
        }
        if let value = pick(logLevel, "LOG_LEVEL") {
            guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(value) else {
                throw ConfigurationError("SWITCHBOARD_LOG_LEVEL: unknown log level \(value)")
            }
            configuration.logLevel = value
        }
        if let value = pick(logFormat, "LOG_FORMAT") {
            guard value == "json" || value == "text" else {
                throw ConfigurationError("SWITCHBOARD_LOG_FORMAT must be json or text, got \(value)")
            }
            configuration.logFormat = value
        }
        for (variable, keyPath, range) in [
            ("KAFKA_FETCH_WAIT_MS", \SwitchboardConfiguration.kafkaFetchWaitMilliseconds, 1...60_000),
            ("KAFKA_FETCH_MIN_BYTES", \SwitchboardConfiguration.kafkaFetchMinBytes, 1...100_000_000),
            ("KAFKA_STEADY_FETCH_WAIT_MS", \SwitchboardConfiguration.kafkaSteadyFetchWaitMilliseconds, 1...60_000),
            (
                "KAFKA_BACKGROUND_FETCH_WAIT_MS", \SwitchboardConfiguration.kafkaBackgroundFetchWaitMilliseconds,
                1...60_000
            ),
            ("KAFKA_LINGER_MS", \SwitchboardConfiguration.kafkaLingerMilliseconds, 0...60_000),
        ] {
            guard let raw = pick(nil, variable) else { continue }
            guard let value = Int(raw), range.contains(value) else {
                throw ConfigurationError("SWITCHBOARD_\(variable) must be a whole number in \(range), got \(raw)")
            }
            configuration[keyPath: keyPath] = value
        }
        if configuration.adminPort != 0 && configuration.adminPort == configuration.httpPort {
            throw ConfigurationError(
                "SWITCHBOARD_ADMIN_PORT must differ from SWITCHBOARD_HTTP_PORT (\(configuration.httpPort))")
        }
        _ = try configuration.redisEndpoint
        return configuration
    }

    /// `key=value;key=value` → librdkafka properties; a malformed pair is refused at start.
    static func kafkaProperties(_ text: String) throws -> [String: String] {
        var properties: [String: String] = [:]
        for pair in text.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespaces) }) where !pair.isEmpty {
            guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else {
                throw ConfigurationError("SWITCHBOARD_KAFKA_PROPERTIES: \(pair) is not key=value")
            }
            properties[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        return properties
    }

    static func flag(_ value: String) -> Bool? {
        switch value.lowercased() {
        case "1", "true", "yes", "on": true
        case "0", "false", "no", "off": false
        default: nil
        }
    }

    /// A secret as configured: long enough, and neither missing nor published unless in development mode.
    static func secret(_ value: String?, variable: String, developmentMode: Bool) throws -> String {
        guard let value else {
            guard developmentMode else {
                throw ConfigurationError(
                    "\(variable) is required (e.g. openssl rand -base64 48); SWITCHBOARD_DEVELOPMENT_MODE=1 uses a built-in development secret"
                )
            }
            return SwitchboardConfiguration.developmentSecret
        }
        guard value.utf8.count >= TokenAuthority.minimumSecretBytes else {
            throw ConfigurationError(
                "\(variable) must be at least \(TokenAuthority.minimumSecretBytes) bytes (HS256 keys shorter than the hash are weak)"
            )
        }
        guard developmentMode || !SwitchboardConfiguration.publishedSecrets.contains(value) else {
            throw ConfigurationError(
                "\(variable) is a published placeholder; set a secret of your own (development mode only allows it)")
        }
        return value
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
