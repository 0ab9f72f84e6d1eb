import ArgumentParser
import Foundation
import Logging
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime

/// `switchboard dlq list | show | replay`: what was dead-lettered, why, and sending it back where it came
/// from once the cause is fixed.
struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq", abstract: "Inspect and replay dead-lettered events.",
        discussion: """
            A handler's message goes to <topic>.dlq only when it can never be handled as it is (undecodable, \
            invalid, an unknown type) or failed every retry; outages of Redis, PostgreSQL or the broker make \
            the partition wait instead. `replay` sends the dead letters not replayed before back to their \
            origin topic and records how far it got as the committed offset of the group \
            \(DeadLetterReplay.group), so a second replay sends nothing twice.
            """,
        subcommands: [List.self, Show.self, Replay.self])

    struct Connection: ParsableArguments {
        @Option(help: "Kafka brokers (env SWITCHBOARD_KAFKA_BROKERS; default 127.0.0.1:9092).") var brokers: String?
        @Flag(help: "Print JSON (one document per line) instead of text.") var json = false

        func client() throws -> KafkaClientConfiguration {
            KafkaClientConfiguration(
                bootstrapServers: try setting(brokers, environment: "KAFKA_BROKERS", default: "127.0.0.1:9092"),
                clientID: "switchboard-dlq")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Count the dead letters of every topic, or list one topic's (e.g. sb.client.events).")

        @Argument(help: "A topic or its .dlq topic; omitted: a count for every topic.") var topic: String?
        @OptionGroup var connection: Connection

        func run() async throws {
            let client = try connection.client()
            guard let topic else {
                let counts = try await DeadLetterReplay.counts(
                    client: client, topics: Topics.all.map(\.deadLetter.name))
                if connection.json {
                    for count in counts { print(try JSONLines.encode(count)) }
                } else {
                    for count in counts {
                        print("\(count.topic)\t\(count.total) dead letters, \(count.pending) not replayed")
                    }
                }
                return
            }
            let letters = try await DeadLetterReplay.read(
                client: client, topic: DeadLetterReplay.deadLetterTopic(topic))
            for letter in letters {
                print(connection.json ? try JSONLines.encode(letter.summary) : letter.summary.line)
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print one dead letter: its headers and the event.")

        @Argument(help: "A topic or its .dlq topic.") var topic: String
        @Argument(help: "The dead letter's offset (from `list`).") var offset: Int64
        @OptionGroup var connection: Connection

        func run() async throws {
            let letters = try await DeadLetterReplay.read(
                client: try connection.client(), topic: DeadLetterReplay.deadLetterTopic(topic))
            guard let letter = letters.first(where: { $0.message.offset == offset }) else {
                throw ValidationError(
                    "no dead letter at offset \(offset) of \(DeadLetterReplay.deadLetterTopic(topic))")
            }
            if connection.json {
                print(try JSONLines.encode(letter.detail))
            } else {
                print(letter.summary.line)
                for header in letter.message.headers { print("  \(header.name): \(header.stringValue)") }
                print(String(decoding: letter.message.value, as: UTF8.self))
            }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send the dead letters not replayed before back to their origin topic.")

        @Argument(help: "A topic or its .dlq topic.") var topic: String
        @OptionGroup var connection: Connection

        func run() async throws {
            var logger = Logger(label: "switchboard.dlq")
            logger.logLevel = .warning
            let replayed = try await DeadLetterReplay.replay(
                client: try connection.client(), topic: DeadLetterReplay.deadLetterTopic(topic), logger: logger)
            for record in replayed {
                print(
                    connection.json
                        ? try JSONLines.encode(record) : "replayed \(record.from) → \(record.to) @\(record.offset)")
            }
            if !connection.json { print("\(replayed.count) replayed") }
        }
    }
}

/// One dead letter as read from its topic.
struct DeadLetterEntry: Sendable {
    var message: KafkaConsumerMessage
    var replayed: Bool

    struct Summary: Codable, Sendable {
        var topic: String
        var offset: Int64
        var key: String?
        var type: String?
        var kind: String?
        var error: String?
        var origin: String?
        var attempts: String?
        var replayed: Bool

        var line: String {
            "\(offset)\t\(replayed ? "replayed" : "pending")\t\(type ?? "?")\tkey=\(key ?? "-")\tfrom=\(origin ?? "?")\t\(kind ?? "?"): \(error ?? "")"
        }
    }

    struct Detail: Codable, Sendable {
        var summary: Summary
        var headers: [String: String]
        var value: String
    }

    var summary: Summary {
        Summary(
            topic: message.topic, offset: message.offset, key: message.keyString, type: message.header(BusHeaders.type),
            kind: message.header(DeadLetter.kindHeader), error: message.header(DeadLetter.errorHeader),
            origin: message.header(DeadLetter.originHeader), attempts: message.header(DeadLetter.attemptsHeader),
            replayed: replayed)
    }

    var detail: Detail {
        Detail(
            summary: summary,
            headers: Dictionary(
                message.headers.map { ($0.name, $0.stringValue) }, uniquingKeysWith: { _, last in last }),
            value: String(decoding: message.value, as: UTF8.self))
    }
}

enum DeadLetterReplay {
    /// Its committed offset on a dead-letter topic is how far `replay` got.
    static let group = "sb.dlq-replay"

    struct Count: Codable, Sendable {
        var topic: String
        var total: Int64
        var pending: Int64
    }

    struct Record: Codable, Sendable {
        var from: String
        var to: String
        var offset: Int64
    }

    static func deadLetterTopic(_ topic: String) -> String {
        TopicSpec.origin(ofDeadLetter: topic) == nil ? TopicSpec.deadLetterName(of: topic) : topic
    }

    static func counts(client: KafkaClientConfiguration, topics: [String]) async throws -> [Count] {
        let lag = try await KafkaGroupLag.measure(client: client, groups: [(group, topics)], logger: quietLogger)
        let partitions = lag.first?.partitions ?? []
        return topics.map { topic in
            let own = partitions.filter { $0.topic == topic }
            return Count(
                topic: topic, total: own.reduce(0) { $0 + $1.highWatermark - $1.lowWatermark },
                pending: own.reduce(0) { $0 + $1.lag })
        }
    }

    /// Every retained dead letter of `topic`, marked replayed or not.
    static func read(client: KafkaClientConfiguration, topic: String) async throws -> [DeadLetterEntry] {
        let lag = try await KafkaGroupLag.measure(client: client, groups: [(group, [topic])], logger: quietLogger)
        let partitions = lag.first?.partitions ?? []
        let replayedBelow = Dictionary(partitions.map { ($0.partition, $0.committed ?? 0) }, uniquingKeysWith: max)
        var ends: [Int32: Int64] = [:]
        for partition in partitions where partition.highWatermark > partition.lowWatermark {
            ends[partition.partition] = partition.highWatermark
        }
        // A throwaway group reads from the oldest kept letter, without moving the replay group.
        let messages = try await readToEnd(
            client: client, group: "sb-dlq-read-\(UUID().uuidString.lowercased())", topic: topic, ends: ends)
        return messages.map {
            DeadLetterEntry(message: $0, replayed: $0.offset < replayedBelow[$0.partition, default: 0])
        }
    }

    /// Replays what the replay group has not passed yet; each letter's offset is stored only after its
    /// origin topic has it, so an interrupted replay resumes where it stopped.
    static func replay(client: KafkaClientConfiguration, topic: String, logger: Logger) async throws -> [Record] {
        guard let origin = TopicSpec.origin(ofDeadLetter: topic) else {
            throw ValidationError("\(topic) is not a dead-letter topic")
        }
        let lag = try await KafkaGroupLag.measure(client: client, groups: [(group, [topic])], logger: logger)
        var ends: [Int32: Int64] = [:]
        for partition in lag.first?.partitions ?? [] where partition.lag > 0 {
            ends[partition.partition] = partition.highWatermark
        }
        guard !ends.isEmpty else { return [] }
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: client), logger: logger)
        var records: [Record] = []
        do {
            _ = try await readToEnd(client: client, group: group, topic: topic, ends: ends) { message, consumer in
                var headers = message.headers.filter {
                    !$0.name.hasPrefix("sb-dlq-") && $0.name != DeadLetter.replayedFromHeader
                }
                headers.append(
                    KafkaHeader(
                        name: DeadLetter.replayedFromHeader,
                        string: "\(message.topic)/\(message.partition)/\(message.offset)"))
                var outgoing = KafkaOutgoingMessage(topic: origin, key: nil, value: message.value, headers: headers)
                outgoing.key = message.key
                let report = try await producer.send(outgoing)
                try consumer.markProcessed(message)
                records.append(
                    Record(
                        from: "\(message.topic)/\(message.partition)/\(message.offset)", to: origin,
                        offset: report.offset))
            }
        } catch {
            await producer.shutdown()
            throw error
        }
        await producer.shutdown()
        return records
    }

    /// Reads `topic` as member of `group` until every partition in `ends` reached its end offset.
    @discardableResult
    private static func readToEnd(
        client: KafkaClientConfiguration, group: String, topic: String, ends: [Int32: Int64],
        each: (KafkaConsumerMessage, KafkaConsumer) async throws -> Void = { _, _ in }
    ) async throws -> [KafkaConsumerMessage] {
        guard !ends.isEmpty else { return [] }
        var configuration = KafkaConsumerConfiguration(client: client, groupID: group)
        configuration.fetchWaitMaxMilliseconds = 100
        let consumer = try KafkaConsumer(configuration: configuration, topics: [topic], logger: quietLogger)
        var messages: [KafkaConsumerMessage] = []
        var remaining = ends
        do {
            for await partition in consumer.partitions {
                guard let end = remaining[partition.partition.partition] else { continue }
                for await message in partition {
                    messages.append(message)
                    try await each(message, consumer)
                    if message.offset + 1 >= end { break }
                }
                remaining[partition.partition.partition] = nil
                if remaining.isEmpty { break }
            }
        } catch {
            await consumer.close()
            throw error
        }
        // Closing commits the offsets `each` stored (auto-commit commits on close).
        await consumer.close()
        return messages
    }

    private static var quietLogger: Logger {
        var logger = Logger(label: "switchboard.dlq")
        logger.logLevel = .warning
        return logger
    }
}
