import ArgumentParser
import Foundation
import Logging
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime

/// The operator CLI: `switchboard up | status | send | tail | dlq | token | bench`.
public struct SwitchboardCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "switchboard", abstract: "Operate a Switchboard deployment.",
        subcommands: [
            UpCommand.self, StatusCommand.self, SendCommand.self, TailCommand.self, DeadLetterCommand.self,
            TokenCommand.self,
            BenchCommand.self,
        ])

    public init() {}
}

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "token", abstract: "Mint a development token (HS256).")

    @Option(help: "The user id (the token's sub).") var user: String
    @Option(help: "The HS256 secret (env SWITCHBOARD_JWT_SECRET; default: the development secret).") var secret: String?
    @Option(help: "Lifetime in seconds.") var ttl: Int = 86_400
    @Option(help: "Roles, e.g. admin or service (repeatable).") var role: [String] = []

    func run() async throws {
        let secret = try setting(secret, environment: "JWT_SECRET", default: SwitchboardConfiguration.developmentSecret)
        // The services' iss / aud, when the deployment names them, so the token passes their checks.
        let environment = ProcessInfo.processInfo.environment
        let policy = TokenPolicy(
            issuer: environment["SWITCHBOARD_JWT_ISSUER"].flatMap { $0.isEmpty ? nil : $0 },
            audience: environment["SWITCHBOARD_JWT_AUDIENCE"].flatMap { $0.isEmpty ? nil : $0 })
        let authority = try await TokenAuthority(secret: secret, policy: policy)
        print(try await authority.mint(user: user, lifetime: .seconds(ttl), roles: role.isEmpty ? nil : role))
    }
}

struct TailCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail", abstract: "Print a topic's events live, decoded.",
        discussion: "Topics: \(Topics.all.map(\.name).joined(separator: ", ")) and their .dlq topics.")

    @Argument(help: "The topic to follow.") var topic: String
    @Option(help: "Only events with this routing key (conversation, device session or run id).") var key: String?
    @Option(help: "Only events of this type (e.g. client.event or chat.message.submitted).") var type: String?
    @Flag(help: "Print each envelope as one line of JSON.") var json = false
    @Flag(help: "Start from the oldest retained event instead of new ones.") var fromBeginning = false
    @Option(help: "Kafka brokers (env SWITCHBOARD_KAFKA_BROKERS; default 127.0.0.1:9092).") var brokers: String?

    func run() async throws {
        let brokers = try setting(brokers, environment: "KAFKA_BROKERS", default: "127.0.0.1:9092")
        var logger = Logger(label: "switchboard.tail")
        logger.logLevel = .warning
        var configuration = KafkaConsumerConfiguration(
            client: KafkaClientConfiguration(bootstrapServers: brokers, clientID: "switchboard-tail"),
            groupID: "sb-tail-\(UUID().uuidString.lowercased())")
        configuration.startFromLatest = !fromBeginning
        // A person reads along: a tenth of a second is live enough, and dead letters can wait a second.
        configuration.fetchWaitMaxMilliseconds = TopicSpec.origin(ofDeadLetter: topic) != nil ? 1000 : 100
        let consumer = try KafkaConsumer(configuration: configuration, topics: [topic], logger: logger)
        let formatter = TailFormatter(key: key, type: type, json: json)
        await withDiscardingTaskGroup { group in
            for await partition in consumer.partitions {
                group.addTask {
                    for await message in partition {
                        if let line = formatter.line(for: message) { print(line) }
                    }
                }
            }
        }
        await consumer.close()
    }
}

/// Turns a bus message into one line for `tail`, or nil when the filters exclude it.
public struct TailFormatter: Sendable {
    public var key: String?
    public var type: String?
    public var json: Bool

    public init(key: String?, type: String?, json: Bool) {
        self.key = key
        self.type = type
        self.json = json
    }

    public func line(for message: KafkaConsumerMessage) -> String? {
        if let key, message.keyString != key { return nil }
        let header = try? EnvelopeCodec.header(from: message.value)
        if let type, (header?.type ?? message.header(BusHeaders.type)) != type { return nil }
        let raw = String(decoding: message.value, as: UTF8.self)
        if json { return raw }
        guard let header else {
            return "\(message.topic)/\(message.partition)@\(message.offset) undecodable: \(raw.prefix(200))"
        }
        let time = Date(timeIntervalSince1970: Double(header.time) / 1e6).formatted(.iso8601)
        let payload = Self.payload(of: raw) ?? ""
        return
            "\(time) \(header.type) key=\(header.routingKey) from=\(header.source.service)/\(header.source.instance) \(payload)"
    }

    static func payload(of raw: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(raw.utf8)) as? [String: Any],
            let payload = object["payload"],
            let data = try? JSONSerialization.data(
                withJSONObject: payload, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
