import ArgumentParser
import AsyncHTTPClient
import Foundation
import Histogram
import Logging
import NIOCore
import NIOHTTP1
import PostgresNIO
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRuntime
import SwitchboardStore

/// Issue 5, benchmark 1: history pages of 50 messages out of 1 000 000 messages in 10 000 sessions.
/// Seeds PostgreSQL directly (server-side `generate_series`, 100 000 rows per statement: the rows are
/// the ones the persistence consumer writes, only made faster), then times the page through the
/// gateway's REST endpoint and the store's query alone.
struct HistoryBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Seed a large history into PostgreSQL, then time pages of 50 messages (REST and store).",
        discussion: "Seeding is skipped when the sessions of --tag are already there, so a second run measures at once."
    )

    @Option(help: "The gateway's HTTP base URL.") var gateway = "http://127.0.0.1:8080"
    @Option(help: "PostgreSQL URL (env SWITCHBOARD_POSTGRES_URL).") var postgres: String?
    @Option(help: "Sessions to seed.") var sessions = 10_000
    @Option(help: "Messages to seed, spread evenly over the sessions.") var messages = 1_000_000
    @Option(help: "Users owning the sessions.") var users = 1_000
    @Option(help: "Pages requested (each: the newest page, then the next one by its cursor).") var requests = 2_000
    @Option(help: "Requests made first and not measured.") var warmup = 200
    @Option(help: "Names of the seeded rows start with this.") var tag = "hb"
    @Option(help: "HS256 secret (env SWITCHBOARD_JWT_SECRET).") var secret: String?

    @OptionGroup var output: BenchOutput

    func report() async throws {
        guard sessions > 0, users > 0, messages >= sessions, requests > 0 else {
            throw ValidationError("sessions, users and requests must be positive, and messages ≥ sessions")
        }
        let secret = try setting(secret, environment: "JWT_SECRET", default: SwitchboardConfiguration.developmentSecret)
        let url = try setting(
            postgres, environment: "POSTGRES_URL", default: SwitchboardConfiguration(service: .notifier).postgresURL)
        let store = HistoryStore(
            configuration: try StoreConfiguration(url: url, maximumConnections: 2), logger: Self.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await store.run() }
            defer { group.cancelAll() }
            try await seed(store)
            try await measure(store, secret: secret)
        }
    }

    private func seed(_ store: HistoryStore) async throws {
        let existing =
            try await store.client.query(
                "SELECT count(*)::int8 FROM sessions WHERE chat_id LIKE \(tag + "-s-%")", logger: Self.logger
            ).collect().first?.decode(Int64.self) ?? 0
        if existing == Int64(sessions) {
            BenchReporter.say("history: \(sessions) sessions of tag \(tag) already seeded")
            return
        }
        guard existing == 0 else {
            throw ValidationError("tag \(tag) is partly seeded (\(existing) sessions); use another --tag")
        }
        let perSession = messages / sessions
        let started = ContinuousClock.now
        let base = Clock.epochMicroseconds() - Int64(messages) * 1_000
        try await store.client.query(
            """
            INSERT INTO sessions (chat_id, user_id, topic, state, message_count, created_at, updated_at)
            SELECT \(tag) || '-s-' || s, \(tag) || '-u-' || (s % \(users)), 'benchmark session ' || s, 'completed',
                   \(perSession), \(base) + s, \(base) + s + \(Int64(perSession) * 1_000)
            FROM generate_series(0, \(sessions - 1)) AS s
            """, logger: Self.logger)
        // Messages n = 0…: session n % sessions, a minute-long conversation per session, alternating
        // user and bot messages of ~120 characters.
        let batch = 100_000
        for first in stride(from: 0, to: sessions * perSession, by: batch) {
            let last = min(first + batch, sessions * perSession) - 1
            try await store.client.query(
                """
                INSERT INTO messages (id, event_id, chat_id, chat_type, user_id, is_bot, author, content, extra, run_id, status, created_at)
                SELECT \(tag) || '-m-' || n, md5(\(tag) || '-m-' || n)::uuid, \(tag) || '-s-' || (n % \(sessions)), 'NORMAL',
                       \(tag) || '-u-' || ((n % \(sessions)) % \(users)), n % 2 = 1, CASE WHEN n % 2 = 1 THEN 'Alex' ELSE 'user' END,
                       'message ' || n || ' of the benchmark: ' || repeat('lorem ipsum ', 8), '{}',
                       CASE WHEN n % 2 = 1 THEN 'run-' || n END, CASE WHEN n % 2 = 1 THEN 'completed' END,
                       \(base) + n * 1000
                FROM generate_series(\(first), \(last)) AS n
                """, logger: Self.logger)
        }
        try await store.client.query("ANALYZE sessions", logger: Self.logger)
        try await store.client.query("ANALYZE messages", logger: Self.logger)
        let seconds = Self.seconds(ContinuousClock.now - started)
        BenchReporter.say(
            String(
                format: "history: seeded %d messages in %d sessions (%d users) in %.1f s (%.0f rows/s)",
                sessions * perSession, sessions, users, seconds, Double(sessions * perSession) / seconds))
    }

    private func measure(_ store: HistoryStore, secret: String) async throws {
        let authority = try await TokenAuthority(secret: secret)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            try await measure(store, authority: authority, http: http)
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }

    private func measure(_ store: HistoryStore, authority: TokenAuthority, http: HTTPClient) async throws {
        var tokens: [Int: String] = [:]
        var restFirst = Self.histogram(), restNext = Self.histogram(), storeFirst = Self.histogram(),
            storeNext = Self.histogram()
        var failures = 0
        BenchReporter.begin("pages", total: warmup + requests)
        for index in 0..<(warmup + requests) {
            BenchReporter.step()
            let session = Int.random(in: 0..<sessions)
            let user = session % users
            let chatID = "\(tag)-s-\(session)", userID = "\(tag)-u-\(user)"
            if tokens[user] == nil { tokens[user] = try await authority.mint(user: userID) }
            let token = tokens[user]!
            let measured = index >= warmup

            // The store alone: the ownership check and the page query, as the route runs them.
            var started = ContinuousClock.now
            let page = try await store.messages(chatID, user: userID, limit: 50)
            if measured { _ = storeFirst.record(microseconds(ContinuousClock.now - started)) }
            guard page.items.count == 50, let cursor = page.nextCursor else {
                throw ValidationError("session \(chatID) returned \(page.items.count) messages; is it seeded?")
            }
            started = ContinuousClock.now
            let older = try await store.messages(chatID, user: userID, before: Cursor(encoded: cursor), limit: 50)
            if measured { _ = storeNext.record(microseconds(ContinuousClock.now - started)) }
            guard older.items.count == 50 else {
                throw ValidationError("the second page of \(chatID) has \(older.items.count) messages")
            }

            // Through the gateway: authentication, the same queries, JSON.
            let path = "\(gateway)/api/v1/conversations/\(chatID)/messages?limit=50"
            for (url, isFirst) in [(path, true), (path + "&cursor=\(cursor)", false)] {
                started = ContinuousClock.now
                let count = try await Self.get(url, token: token, http: http)
                let elapsed = microseconds(ContinuousClock.now - started)
                guard count == 50 else {
                    failures += 1
                    continue
                }
                if measured { _ = isFirst ? restFirst.record(elapsed) : restNext.record(elapsed) }
            }
        }
        BenchReporter.say(
            "history pages of 50 messages, \(requests) random sessions, one client, after \(warmup) unmeasured")
        BenchReporter.record(LatencySummary(name: "REST newest page", histogram: restFirst))
        BenchReporter.record(LatencySummary(name: "REST next page (cursor)", histogram: restNext))
        BenchReporter.record(LatencySummary(name: "store newest page", histogram: storeFirst))
        BenchReporter.record(LatencySummary(name: "store next page (cursor)", histogram: storeNext))
        if failures > 0 { throw ValidationError("\(failures) REST pages did not hold 50 messages") }
    }

    /// GET a messages page; returns how many messages it held.
    static func get(_ url: String, token: String, http: HTTPClient) async throws -> Int {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let response = try await http.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 4 << 20)
        guard response.status == .ok else {
            throw ValidationError("GET \(url): HTTP \(response.status.code) \(String(buffer: body))")
        }
        let json = try JSONDecoder().decode(JSONValue.self, from: Data(body.readableBytesView))
        return json["messages"]?.arrayValue?.count ?? 0
    }

    static var logger: Logger {
        var logger = Logger(label: "switchboard.bench")
        logger.logLevel = .warning
        return logger
    }

    static func histogram() -> Histogram<UInt64> {
        Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// Issue 5, benchmark 2: the persistence consumer's ingest rate. Publishes user messages to
/// `sb.chat.requests` as gateways do, and counts their rows in PostgreSQL until all are there. Run it
/// with the orchestrator stopped (bench.sh does), so the runs those messages would start do not
/// share the two cores with the consumer being measured.
struct IngestBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Publish user messages and time the persistence consumer writing them to PostgreSQL.")

    @Option(help: "Kafka brokers (env SWITCHBOARD_KAFKA_BROKERS).") var brokers: String?
    @Option(help: "PostgreSQL URL (env SWITCHBOARD_POSTGRES_URL).") var postgres: String?
    @Option(help: "Messages to publish.") var messages = 50_000
    @Option(help: "Conversations they belong to (the routing keys, so the partitions share the load).")
    var conversations = 1_000
    @Option(help: "Seconds to wait for the last row.") var timeout = 300

    @OptionGroup var output: BenchOutput

    func report() async throws {
        guard messages > 0, conversations > 0 else {
            throw ValidationError("messages and conversations must be positive")
        }
        let brokers = try setting(brokers, environment: "KAFKA_BROKERS", default: "127.0.0.1:9092")
        let url = try setting(
            postgres, environment: "POSTGRES_URL", default: SwitchboardConfiguration(service: .notifier).postgresURL)
        let logger = HistoryBench.logger
        let store = HistoryStore(configuration: try StoreConfiguration(url: url, maximumConnections: 1), logger: logger)
        let producer = try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                client: KafkaClientConfiguration(bootstrapServers: brokers, clientID: "switchboard-bench")),
            logger: logger)
        let tag = "ing-\(UUID().uuidString.prefix(8).lowercased())"
        let source = EventSource(service: "bench", instance: "bench")
        let messages = messages, conversations = conversations, timeout = timeout
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await store.run() }
            defer { group.cancelAll() }
            func stored() async throws -> Int64 {
                try await store.client.query(
                    "SELECT count(*)::int8 FROM messages WHERE chat_id LIKE \(tag + "-%")", logger: logger
                ).collect().first?.decode(Int64.self) ?? 0
            }
            _ = try await stored()  // the pool is up before the clock starts
            let started = ContinuousClock.now
            var pending: [DeliveryFuture] = []
            pending.reserveCapacity(messages)
            BenchReporter.begin("published", total: messages)
            for index in 0..<messages {
                BenchReporter.step()
                let conversation = "\(tag)-\(index % conversations)"
                let payload = ChatMessageSubmitted(
                    messageId: "\(tag)-m-\(index)", clientMessageId: "c-\(index)", conversationId: conversation,
                    userId: "\(tag)-user-\(index % conversations)", content: "ingest benchmark message \(index)",
                    gateway: "bench")
                let envelope = Envelope(routingKey: conversation, source: source, payload: payload)
                pending.append(try await producer.enqueue(EventBus.message(envelope, topic: Topics.chatRequests)))
            }
            for future in pending { _ = try await future.report() }
            let published = ContinuousClock.now
            let atPublished = try await stored()
            var count = atPublished
            let deadline = published + .seconds(timeout)
            while count < Int64(messages), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                count = try await stored()
            }
            let finished = ContinuousClock.now
            await producer.shutdown()
            let total = HistoryBench.seconds(finished - started), publishing = HistoryBench.seconds(published - started)
            BenchReporter.say(
                String(
                    format: "ingest: %d user messages in %d conversations, published in %.2f s (%.0f/s)",
                    messages, conversations, publishing, Double(messages) / publishing))
            BenchReporter.say(
                String(
                    format: "rows in PostgreSQL: %lld after %.2f s: %.0f messages/s from the first publish", count,
                    total,
                    Double(count) / total))
            let draining = HistoryBench.seconds(finished - published)
            if draining > 0.2 {
                BenchReporter.say(
                    String(
                        format: "after publishing: %lld rows in %.2f s (%.0f messages/s)", count - atPublished,
                        draining,
                        Double(count - atPublished) / draining))
            }
            if count < Int64(messages) {
                throw ValidationError("only \(count) of \(messages) rows within \(timeout) s")
            }
        }
    }
}
