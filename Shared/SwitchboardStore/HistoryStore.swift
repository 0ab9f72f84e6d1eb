import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import SwitchboardContracts

/// Durable history in PostgreSQL (postgres-nio, fully async). A `Service`: its `run()` runs the
/// connection pool, so it goes into the ServiceGroup before the services that use it; queries made
/// before it runs wait for it.
public struct HistoryStore: Service {
    public let client: PostgresClient
    let logger: Logger

    public init(configuration: StoreConfiguration, logger: Logger) {
        self.client = PostgresClient(configuration: configuration.clientConfiguration, backgroundLogger: logger)
        self.logger = logger
    }

    public func run() async {
        await client.run()
    }

    /// Whether PostgreSQL answers a trivial query within `timeout`: the `/readyz` check of every
    /// service that reads or writes through this store (bounded, so a hung server cannot hang the probe).
    public func isReachable(timeout: Duration = .seconds(2)) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await client.query("SELECT 1", logger: logger).collect()) != nil }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let answer = await group.next() ?? false
            group.cancelAll()
            return answer
        }
    }

    // MARK: Migrations

    /// Migrates with a pool of its own, before the service's pool starts: no consumer writes to a
    /// schema that is not there yet. Waits for the server (it may start after the service).
    public static func migrate(
        configuration: StoreConfiguration, logger: Logger, attempts: Int = 30
    ) async throws {
        var configuration = configuration
        configuration.maximumConnections = 1
        let store = HistoryStore(configuration: configuration, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await store.run() }
            defer { group.cancelAll() }
            var attempt = 0
            while true {
                do {
                    let applied = try await store.migrate()
                    if !applied.isEmpty {
                        logger.info("history schema migrated", metadata: ["store.versions": "\(applied)"])
                    }
                    return
                } catch let error as StoreError
                    where error.code == .migrationFailed && attempt + 1 < attempts
                    && !error.message.contains("unknown to this build")
                {
                    attempt += 1
                    logger.info("waiting for PostgreSQL", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                    try await Task.sleep(for: .milliseconds(500))
                }
            }
        }
    }

    /// Applies the pending migrations in one transaction under an advisory lock, so two processes
    /// starting at once apply each migration exactly once (the second waits, then finds nothing to do).
    /// Returns the versions it applied.
    @discardableResult
    public func migrate(_ migrations: [Migration] = Schema.migrations) async throws -> [Int] {
        do {
            return try await client.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(\(Schema.advisoryLockKey))", logger: logger)
                try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS schema_migrations (
                        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                    """, logger: logger)
                var applied: Set<Int> = []
                for try await version in try await connection.query(
                    "SELECT version FROM schema_migrations", logger: logger
                )
                .decode(Int.self) {
                    applied.insert(version)
                }
                var done: [Int] = []
                for migration in try Schema.pending(applied: applied, migrations: migrations) {
                    for statement in migration.statements {
                        try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    try await connection.query(
                        "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                        logger: logger)
                    done.append(migration.version)
                }
                return done
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(.migrationFailed, "\(String(reflecting: error))")
        }
    }

    public func schemaVersions() async throws -> [Int] {
        var versions: [Int] = []
        for try await version in try await client.query(
            "SELECT version FROM schema_migrations ORDER BY version", logger: logger
        )
        .decode(Int.self) {
            versions.append(version)
        }
        return versions
    }

    // MARK: Writes from the event stream

    /// Writes the rows of one event, or of a batch of events, in one transaction, in order; every
    /// write is keyed by its event's id, so applying the same event again changes nothing. Consecutive
    /// user messages go in two multi-row statements instead of two statements each.
    public func apply(_ writes: [HistoryWrite]) async throws {
        guard !writes.isEmpty else { return }
        try await client.withTransaction(logger: logger) { connection in
            var messages: [UserMessageWrite] = []
            for write in writes {
                if case .userMessage(let message) = write {
                    messages.append(message)
                    continue
                }
                try await Self.insert(messages, on: connection, logger: logger)
                messages.removeAll()
                try await Self.apply(write, on: connection, logger: logger)
            }
            try await Self.insert(messages, on: connection, logger: logger)
        }
    }

    /// User messages, many at once: their sessions (created by the first message), the rows, and each
    /// session's count and time moved by the rows actually inserted (a redelivered one adds nothing).
    /// A reply travels on another topic than the message it answers, so it can be written before its
    /// session exists: a session created afterwards counts such rows and gives them its user.
    static func insert(_ messages: [UserMessageWrite], on connection: PostgresConnection, logger: Logger) async throws {
        guard !messages.isEmpty else { return }
        let ids = messages.map(\.messageId), events = messages.map(\.eventId), chats = messages.map(\.chatId)
        let users = messages.map(\.userId), contents = messages.map(\.content), extras = messages.map(\.extra)
        let times = messages.map(\.createdAt), topics = messages.map { String($0.content.prefix(200)) }
        try await connection.query(
            """
            WITH created AS (
                INSERT INTO sessions (chat_id, user_id, topic, state, message_count, created_at, updated_at)
                SELECT DISTINCT ON (chat_id) chat_id, user_id, topic, 'in_progress',
                       (SELECT count(*) FROM messages early WHERE early.chat_id = m.chat_id), created_at, created_at
                FROM unnest(\(chats)::text[], \(users)::text[], \(topics)::text[], \(times)::int8[]) AS m(chat_id, user_id, topic, created_at)
                ORDER BY chat_id, created_at
                ON CONFLICT (chat_id) DO NOTHING
                RETURNING chat_id, user_id)
            UPDATE messages SET user_id = created.user_id FROM created
            WHERE messages.chat_id = created.chat_id AND messages.user_id IS NULL
            """, logger: logger)
        try await connection.query(
            """
            WITH inserted AS (
                INSERT INTO messages (id, event_id, chat_id, flow_id, chat_type, user_id, is_bot, author, content, extra, created_at)
                SELECT m.id, m.event_id, s.chat_id, s.flow_id, s.chat_type, m.user_id, false, m.user_id, m.content, m.extra::jsonb,
                       m.created_at
                FROM unnest(\(ids)::text[], \(events)::uuid[], \(chats)::text[], \(users)::text[], \(contents)::text[],
                            \(extras)::text[], \(times)::int8[]) WITH ORDINALITY AS m(id, event_id, chat_id, user_id, content, extra, created_at, n)
                JOIN sessions s ON s.chat_id = m.chat_id
                ORDER BY m.n
                ON CONFLICT DO NOTHING
                RETURNING chat_id, created_at),
            counted AS (SELECT chat_id, count(*) AS added, max(created_at) AS latest FROM inserted GROUP BY chat_id)
            UPDATE sessions SET message_count = message_count + counted.added, updated_at = GREATEST(updated_at, counted.latest),
                   state = \(unescaped: stateAfterUserMessage(at: "counted.latest"))
            FROM counted WHERE sessions.chat_id = counted.chat_id
            """, logger: logger)
    }

    /// The state a user message sent at `time` (an SQL expression) leaves its session in: in progress,
    /// unless a reply after it was recorded first. The reply travels on another topic than the message,
    /// so its end (and its state, waiting for input) can be written before the message; for a new
    /// conversation, before its session even exists.
    static func stateAfterUserMessage(at time: String) -> String {
        """
        COALESCE((SELECT CASE WHEN reply.status = 'stopped' THEN 'interrupted' ELSE 'waiting_for_input' END
                  FROM messages reply
                  WHERE reply.chat_id = sessions.chat_id AND reply.is_bot AND reply.created_at > \(time)
                  ORDER BY reply.created_at DESC LIMIT 1), 'in_progress')
        """
    }

    static func apply(_ write: HistoryWrite, on connection: PostgresConnection, logger: Logger) async throws {
        switch write {
        case .userMessage(let message):
            try await insert([message], on: connection, logger: logger)
        case .assistantMessage(let reply):
            // Dated by the reply's start, so it sorts right after the message it answers; the run is the
            // one its start named.
            try await connection.query(
                """
                WITH started AS (
                    SELECT min(created_at) AS created_at, min(run_id) AS run_id FROM turn_parts
                    WHERE message_id = \(reply.messageId) AND kind = 'stream_start'),
                inserted AS (
                    INSERT INTO messages (id, event_id, chat_id, flow_id, chat_type, user_id, is_bot, author, content, extra,
                                          run_id, status, usage, created_at)
                    SELECT \(reply.messageId), \(reply.eventId), \(reply.chatId), s.flow_id, COALESCE(s.chat_type, 'NORMAL'),
                           s.user_id, true, \(reply.role), \(reply.content), \(reply.extra)::jsonb,
                           COALESCE(started.run_id, \(reply.runId)), \(reply.status), \(reply.usage)::jsonb,
                           COALESCE(started.created_at, \(reply.finishedAt))
                    FROM started LEFT JOIN sessions s ON s.chat_id = \(reply.chatId)
                    ON CONFLICT DO NOTHING
                    RETURNING chat_id)
                UPDATE sessions SET message_count = message_count + 1, updated_at = GREATEST(updated_at, \(reply.finishedAt))
                FROM inserted WHERE sessions.chat_id = inserted.chat_id
                """, logger: logger)
        case .part(let part):
            try await insert(part, on: connection, logger: logger)
        case .turn(let turn):
            let inserted = try await connection.query(
                """
                INSERT INTO turns (run_id, event_id, chat_id, message_id, status, pattern, answer, failed_roles, usage, finished_at)
                VALUES (\(turn.runId), \(turn.eventId), \(turn.chatId), \(turn.messageId), \(turn.status), \(turn.pattern),
                        \(turn.answer), \(turn.failedRoles)::jsonb, \(turn.usage)::jsonb, \(turn.finishedAt))
                ON CONFLICT DO NOTHING
                RETURNING run_id
                """, logger: logger
            ).collect()
            guard !inserted.isEmpty else { return }
            for text in turn.texts { try await insert(text, on: connection, logger: logger) }
        case .sessionState(let chatId, let state, let at):
            // A later event's state never goes back to an earlier one (redelivery after newer events).
            try await connection.query(
                """
                UPDATE sessions SET state = \(state.rawValue), updated_at = GREATEST(updated_at, \(at))
                WHERE chat_id = \(chatId) AND state <> 'ended' AND updated_at <= \(at)
                """, logger: logger)
        }
    }

    static func insert(_ part: TurnPart, on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query(
            """
            INSERT INTO turn_parts (id, chat_id, run_id, message_id, kind, role, content, data, created_at)
            VALUES (\(part.id), \(part.chatId), \(part.runId), \(part.messageId), \(part.kind), \(part.role), \(part.content),
                    \(part.data)::jsonb, \(part.createdAt))
            ON CONFLICT DO NOTHING
            """, logger: logger)
    }
}
