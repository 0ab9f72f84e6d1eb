import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime

/// Where the six services answer: their public ports and their admin ports (`/readyz`, `/metrics`).
/// deploy/scripts/run.sh's settings (`SB_HTTP_HOST`, `SB_<SERVICE>_PORT`, `SB_<SERVICE>_ADMIN_PORT`,
/// else the public port + 1000), overridden by flags (`--port` sets the public port, and so the admin one).
public struct ServiceEndpoints: Sendable, Equatable {
    public var host: String
    public var ports: [ServiceKind: Int]
    public var adminPorts: [ServiceKind: Int]

    /// `overrides` are `NAME=PORT` pairs, e.g. `gateway=18080`.
    public static func resolve(
        host: String?, overrides: [String], adminOverrides: [String] = [],
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> ServiceEndpoints {
        func port(_ variable: String) throws -> Int? {
            guard let raw = environment[variable], !raw.isEmpty else { return nil }
            guard let port = Int(raw), (1...65_535).contains(port) else {
                throw ValidationError("\(variable) is not a port: \(raw)")
            }
            return port
        }
        var ports: [ServiceKind: Int] = [:]
        var explicitAdmin: [ServiceKind: Int] = [:]
        for service in ServiceKind.allCases {
            let prefix = "SB_\(service.rawValue.uppercased().replacingOccurrences(of: "-", with: "_"))"
            ports[service] = try port("\(prefix)_PORT") ?? service.defaultHTTPPort
            explicitAdmin[service] = try port("\(prefix)_ADMIN_PORT")
        }
        func parse(_ pair: String, flag: String) throws -> (ServiceKind, Int) {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            let names = ServiceKind.allCases.map(\.rawValue).joined(separator: ", ")
            guard parts.count == 2, let service = ServiceKind(rawValue: parts[0]) else {
                throw ValidationError("\(flag) takes SERVICE=PORT with SERVICE one of \(names); got \(pair)")
            }
            guard let port = Int(parts[1]), (1...65_535).contains(port) else {
                throw ValidationError("\(flag) \(pair): \(parts[1]) is not a port")
            }
            return (service, port)
        }
        for pair in overrides {
            let (service, port) = try parse(pair, flag: "--port")
            ports[service] = port
            explicitAdmin[service] = nil
        }
        for pair in adminOverrides {
            let (service, port) = try parse(pair, flag: "--admin-port")
            explicitAdmin[service] = port
        }
        let host = host ?? environment["SB_HTTP_HOST"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
        var adminPorts: [ServiceKind: Int] = [:]
        for service in ServiceKind.allCases {
            adminPorts[service] =
                explicitAdmin[service] ?? ports[service, default: service.defaultHTTPPort] + ServiceKind.adminPortOffset
        }
        return ServiceEndpoints(host: host, ports: ports, adminPorts: adminPorts)
    }

    public func baseURL(of service: ServiceKind) -> String {
        "http://\(host):\(ports[service] ?? service.defaultHTTPPort)"
    }

    /// Where `/healthz`, `/readyz` and `/metrics` answer.
    public func adminURL(of service: ServiceKind) -> String {
        "http://\(host):\(adminPorts[service] ?? service.defaultAdminPort)"
    }
}

/// One service's answers to `/healthz` and `/readyz`.
public struct ServiceHealth: Sendable, Codable, Equatable {
    public var service: String
    public var url: String
    /// `/healthz` answered 200: the process is up.
    public var healthy: Bool
    /// `/readyz` answered 200: its dependencies answer too.
    public var ready: Bool
    /// The readiness checks that failed, by name (e.g. `kafka-group:sb-notifier`).
    public var failingChecks: [String]
    /// Why the service could not be asked, e.g. connection refused.
    public var error: String?

    public var summary: String {
        if ready { return "ready" }
        if healthy {
            return failingChecks.isEmpty ? "not ready" : "not ready (\(failingChecks.joined(separator: ", ")))"
        }
        return "down" + (error.map { " (\($0))" } ?? "")
    }

    /// Asks one service, giving up after `timeout`.
    public static func probe(_ service: ServiceKind, at baseURL: String, timeout: Duration) async -> ServiceHealth {
        var health = ServiceHealth(
            service: service.rawValue, url: baseURL, healthy: false, ready: false, failingChecks: [])
        do {
            health.healthy = try await get("\(baseURL)/healthz", timeout: timeout).status == 200
            let ready = try await get("\(baseURL)/readyz", timeout: timeout)
            health.ready = ready.status == 200
            if !health.ready, let checks = ready.body["checks"]?.objectValue {
                health.failingChecks = checks.filter { $0.value.boolValue == false }.map(\.key).sorted()
            }
        } catch {
            health.error = Self.reason(error)
        }
        return health
    }

    /// Asks every service at once; the answers in `ServiceKind` order.
    public static func probeAll(_ endpoints: ServiceEndpoints, timeout: Duration) async -> [ServiceHealth] {
        await withTaskGroup(of: ServiceHealth.self) { group in
            for service in ServiceKind.allCases {
                group.addTask { await probe(service, at: endpoints.adminURL(of: service), timeout: timeout) }
            }
            var results: [ServiceHealth] = []
            for await health in group { results.append(health) }
            let order = ServiceKind.allCases.map(\.rawValue)
            return results.sorted { order.firstIndex(of: $0.service)! < order.firstIndex(of: $1.service)! }
        }
    }

    private static func get(_ url: String, timeout: Duration) async throws -> (status: UInt, body: JSONValue) {
        let response = try await HTTPClient.shared.execute(
            HTTPClientRequest(url: url),
            timeout: .milliseconds(
                Int64(timeout.components.seconds * 1000) + timeout.components.attoseconds / 1_000_000_000_000_000))
        let bytes = try await response.body.collect(upTo: 1 << 16)
        let body = (try? JSONDecoder().decode(JSONValue.self, from: Data(bytes.readableBytesView))) ?? .null
        return (response.status.code, body)
    }

    /// A short reason an operator recognises, instead of NIO's type names.
    static func reason(_ error: any Error) -> String {
        let text = String(describing: error)
        if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused" }
        if text.contains("deadlineExceeded") || text.contains("readTimeout") || text.contains("connectTimeout") {
            return "timed out"
        }
        return text
    }
}

/// `switchboard status`'s findings: the services and the consumer groups' lag.
public struct StatusReport: Sendable, Codable, Equatable {
    public struct Group: Sendable, Codable, Equatable {
        public var group: String
        public var topics: [String]
        /// Messages not consumed yet over all the group's partitions.
        public var lag: Int64
        public var uncommittedPartitions: Int
        public var partitions: [PartitionLag]

        public init(_ lag: ConsumerGroupLag) {
            group = lag.group
            topics = lag.topics
            self.lag = lag.totalLag
            uncommittedPartitions = lag.uncommittedPartitions
            partitions = lag.partitions
        }
    }

    public struct Kafka: Sendable, Codable, Equatable {
        public var brokers: String
        /// Why lag could not be measured; nil when it was.
        public var error: String?
    }

    /// Every service ready and the broker answered.
    public var ok: Bool
    public var services: [ServiceHealth]
    public var kafka: Kafka
    public var groups: [Group]

    public init(services: [ServiceHealth], kafka: Kafka, groups: [Group]) {
        self.services = services
        self.kafka = kafka
        self.groups = groups
        ok = services.allSatisfy(\.ready) && kafka.error == nil
    }

    /// What is wrong, one line, or nil when all is well.
    public var problem: String? {
        var problems = services.filter { !$0.ready }.map { "\($0.service) is \($0.summary)" }
        if let error = kafka.error { problems.append("consumer lag unavailable: \(error)") }
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }

    /// The human form: a table of services, then one of groups.
    public func render() -> String {
        var services = TextTable(headers: ["SERVICE", "URL", "HEALTH", "READINESS"])
        for service in self.services {
            services.append([
                service.service, service.url, service.healthy ? "up" : "down",
                service.healthy ? (service.ready ? "ready" : service.summary) : "-",
            ])
        }
        var text = services.render() + "\n\n"
        if let error = kafka.error {
            text += "consumer lag: Kafka at \(kafka.brokers) did not answer: \(error)"
        } else {
            var groups = TextTable(
                headers: ["GROUP", "TOPICS", "PARTITIONS", "UNCOMMITTED", "LAG"],
                alignments: [.left, .left, .right, .right, .right])
            for group in self.groups {
                groups.append([
                    group.group, group.topics.joined(separator: ","), String(group.partitions.count),
                    String(group.uncommittedPartitions), String(group.lag),
                ])
            }
            text += groups.render()
        }
        return text
    }

    /// Probes every service and measures every group's lag, concurrently.
    public static func gather(endpoints: ServiceEndpoints, brokers: String, timeout: Duration) async -> StatusReport {
        async let services = ServiceHealth.probeAll(endpoints, timeout: timeout)
        var logger = Logger(label: "switchboard.status")
        logger.logLevel = .critical
        var kafka = Kafka(brokers: brokers)
        var groups: [Group] = []
        do {
            groups = try await KafkaGroupLag.measure(
                client: KafkaClientConfiguration(bootstrapServers: brokers, clientID: "switchboard-status"),
                groups: ConsumerGroups.subscriptions.map { ($0.group, $0.topics.map(\.name)) }, timeout: timeout,
                logger: logger
            ).map(Group.init)
        } catch let error as KafkaError {
            kafka.error = error.reason
        } catch {
            kafka.error = "\(error)"
        }
        return StatusReport(services: await services, kafka: kafka, groups: groups)
    }
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Every service's health and readiness, and each consumer group's lag.",
        discussion: "Exits 1 when a service is down or not ready, or Kafka does not answer.")

    @Option(help: "Host the services answer on (env SB_HTTP_HOST; default 127.0.0.1).") var host: String?
    @Option(
        name: .customLong("port"),
        help:
            "A service's HTTP port, SERVICE=PORT, repeatable (env SB_<SERVICE>_PORT; defaults 8080 gateway … 8085 notifier)."
    )
    var ports: [String] = []
    @Option(
        name: .customLong("admin-port"),
        help:
            "A service's admin port (/readyz), SERVICE=PORT, repeatable (env SB_<SERVICE>_ADMIN_PORT; default its HTTP port + 1000)."
    )
    var adminPorts: [String] = []
    @Option(help: "Kafka brokers (env SWITCHBOARD_KAFKA_BROKERS; default 127.0.0.1:9092).") var brokers: String?
    @Option(help: "Seconds to wait for each answer.") var timeout: Double = 3
    @Flag(help: "Print one JSON document instead of tables.") var json = false

    func validate() throws {
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
        let endpoints = try ServiceEndpoints.resolve(host: host, overrides: ports, adminOverrides: adminPorts)
        let brokers = try setting(brokers, environment: "KAFKA_BROKERS", default: "127.0.0.1:9092")
        let report = try await LiveStatus.with(mode: .forStandardError(json: json)) { status in
            status.update(
                "asking \(ServiceKind.allCases.count) services and \(ConsumerGroups.subscriptions.count) consumer groups…"
            )
            return await StatusReport.gather(
                endpoints: endpoints, brokers: brokers, timeout: .milliseconds(Int64(timeout * 1000)))
        }
        print(try json ? JSONLines.encode(report) : report.render())
        if let problem = report.problem {
            writeStandardError("switchboard: \(problem)\n")
            throw ExitCode(1)
        }
    }
}

/// One JSON document per line, keys sorted so scripts and diffs see a stable shape.
enum JSONLines {
    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
