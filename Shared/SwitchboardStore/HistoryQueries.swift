import Foundation
import PostgresNIO
import SwitchboardContracts

/// The query side: what the REST interfaces read and change. Every call names the user; a session
/// of someone else is `forbidden`, a missing one `notFound`.
extension HistoryStore {
    static let sessionColumns =
        "chat_id, user_id, flow_id, chat_type, topic, logo, state, message_count::int8, created_at, updated_at"
    static let messageColumns =
        "seq, id, chat_id, flow_id, chat_type, user_id, is_bot, author, content, extra::text, source::int8, run_id, status, usage::text, created_at"

    // MARK: Sessions

    /// Creates the session, or returns it when this user already has it (a retried create).
    public func createSession(_ session: NewSession, now: Int64 = Clock.epochMicroseconds()) async throws
        -> SessionRecord
    {
        let session = try session.validated()
        try await client.query(
            """
            INSERT INTO sessions (chat_id, user_id, flow_id, chat_type, topic, logo, created_at, updated_at)
            VALUES (\(session.chatId), \(session.userId), \(session.flowId), \(session.chatType), \(session.topic), \(session.logo),
                    \(now), \(now))
            ON CONFLICT (chat_id) DO NOTHING
            """, logger: logger)
        return try await self.session(session.chatId, user: session.userId)
    }

    /// The session, checked to be the user's.
    public func session(_ chatId: String, user: String) async throws -> SessionRecord {
        let rows = try await client.query(
            PostgresQuery(
                unsafeSQL: "SELECT \(Self.sessionColumns) FROM sessions WHERE chat_id = $1", binds: binds(chatId)),
            logger: logger
        ).collect()
        guard let row = rows.first else { throw StoreError(.notFound, "no session \(chatId)") }
        let record = try Self.session(row)
        guard record.userId == user else { throw StoreError(.forbidden, "session \(chatId) belongs to another user") }
        return record
    }

    /// Whether the session exists and whose it is, without failing (ownership checks of other calls).
    public func owner(of chatId: String) async throws -> String? {
        for try await owner in try await client.query(
            "SELECT user_id FROM sessions WHERE chat_id = \(chatId)", logger: logger
        )
        .decode(String.self) {
            return owner
        }
        return nil
    }

    public func listSessions(user: String, query: SessionQuery) async throws -> Page<SessionRecord> {
        let query = try query.validated()
        let column = query.sort == .created ? "created_at" : "updated_at"
        var bindings = PostgresBindings()
        bindings.append(user)
        var sql = "SELECT \(Self.sessionColumns) FROM sessions WHERE user_id = $1"
        func bind(_ value: some PostgresDynamicTypeEncodable) -> String {
            bindings.append(value)
            return "$\(bindings.count)"
        }
        if let chatType = query.chatType { sql += " AND chat_type = \(bind(chatType))" }
        if let from = query.createdFrom { sql += " AND created_at >= \(bind(from))" }
        if let until = query.createdUntil { sql += " AND created_at < \(bind(until))" }
        if let cursor = query.cursor {
            sql += " AND (\(column), chat_id) < (\(bind(cursor.value)), \(bind(cursor.tieBreaker)))"
        }
        sql += " ORDER BY \(column) DESC, chat_id DESC LIMIT \(bind(query.limit + 1))"
        var items = try await client.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: logger).collect()
            .map(Self.session)
        var next: String?
        if items.count > query.limit {
            items.removeLast()
            if let last = items.last {
                next =
                    Cursor(value: query.sort == .created ? last.createdAt : last.updatedAt, tieBreaker: last.chatId)
                    .encoded
            }
        }
        return Page(items: items, nextCursor: next)
    }

    public func updateSession(
        _ chatId: String, user: String, changes: SessionChanges, now: Int64 = Clock.epochMicroseconds()
    )
        async throws -> SessionRecord
    {
        try changes.validate()
        _ = try await session(chatId, user: user)
        try await client.query(
            """
            UPDATE sessions SET topic = COALESCE(\(changes.topic), topic), logo = COALESCE(\(changes.logo), logo),
                   state = COALESCE(\(changes.state?.rawValue), state), updated_at = GREATEST(updated_at, \(now))
            WHERE chat_id = \(chatId) AND user_id = \(user)
            """, logger: logger)
        return try await session(chatId, user: user)
    }

    /// Deletes the session with its messages and turns, in one transaction.
    public func deleteSession(_ chatId: String, user: String) async throws {
        _ = try await session(chatId, user: user)
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("DELETE FROM turn_parts WHERE chat_id = \(chatId)", logger: logger)
            try await connection.query("DELETE FROM turns WHERE chat_id = \(chatId)", logger: logger)
            try await connection.query("DELETE FROM messages WHERE chat_id = \(chatId)", logger: logger)
            try await connection.query(
                "DELETE FROM sessions WHERE chat_id = \(chatId) AND user_id = \(user)", logger: logger)
        }
    }

    // MARK: Messages

    /// A page of the conversation's messages, newest first, starting before `cursor` (a reverse
    /// cursor: the next page holds older messages). Pages never repeat or skip a message.
    public func messages(_ chatId: String, user: String, before cursor: Cursor? = nil, limit: Int = 50) async throws
        -> Page<MessageRecord>
    {
        guard (1...SessionQuery.maximumLimit).contains(limit) else {
            throw StoreError(.invalidArgument, "limit must be 1…\(SessionQuery.maximumLimit), got \(limit)")
        }
        _ = try await session(chatId, user: user)
        return try await page(chatId, before: cursor, limit: limit)
    }

    /// The page query without the ownership check (the caller did it).
    func page(_ chatId: String, before cursor: Cursor?, limit: Int) async throws -> Page<MessageRecord> {
        var bindings = PostgresBindings()
        bindings.append(chatId)
        var sql = "SELECT \(Self.messageColumns) FROM messages WHERE chat_id = $1"
        if let cursor {
            guard let seq = Int64(cursor.tieBreaker) else {
                throw StoreError(.invalidArgument, "cursor is not one this server made")
            }
            bindings.append(cursor.value)
            bindings.append(seq)
            sql += " AND (created_at, seq) < ($2, $3)"
        }
        bindings.append(limit + 1)
        sql += " ORDER BY created_at DESC, seq DESC LIMIT $\(bindings.count)"
        var items = try await client.query(PostgresQuery(unsafeSQL: sql, binds: bindings), logger: logger).collect()
            .map(Self.message)
        var next: String?
        if items.count > limit {
            items.removeLast()
            if let last = items.last { next = Cursor(value: last.createdAt, tieBreaker: String(last.seq)).encoded }
        }
        return Page(items: items, nextCursor: next)
    }

    /// The newest `limit` messages, oldest first: the context of the conversation's next run.
    public func recentMessages(_ chatId: String, limit: Int) async throws -> [MessageRecord] {
        try await page(chatId, before: nil, limit: max(1, min(limit, SessionQuery.maximumLimit))).items.reversed()
    }

    /// Deletes one message of the user's.
    public func deleteMessage(_ messageId: String, user: String) async throws {
        var chatId: String?
        for try await id in try await client.query(
            "SELECT chat_id FROM messages WHERE id = \(messageId)", logger: logger
        )
        .decode(String.self) {
            chatId = id
        }
        guard let chatId else { throw StoreError(.notFound, "no message \(messageId)") }
        _ = try await session(chatId, user: user)
        try await client.query(
            """
            WITH deleted AS (DELETE FROM messages WHERE id = \(messageId) RETURNING chat_id)
            UPDATE sessions SET message_count = GREATEST(message_count - 1, 0) FROM deleted WHERE sessions.chat_id = deleted.chat_id
            """, logger: logger)
    }

    /// The parts of a run, in order (a faithful replay of the turn).
    public func parts(run runId: String, chatId: String, user: String) async throws -> [TurnPart] {
        _ = try await session(chatId, user: user)
        return try await client.query(
            """
            SELECT id, chat_id, run_id, message_id, kind, role, content, data::text, created_at FROM turn_parts
            WHERE chat_id = \(chatId) AND run_id = \(runId) ORDER BY created_at, id
            """, logger: logger
        ).collect().map { row in
            let cells = row.makeRandomAccess()
            return TurnPart(
                id: try cells[0].decode(String.self), chatId: try cells[1].decode(String.self),
                runId: try cells[2].decode(String?.self), messageId: try cells[3].decode(String?.self),
                kind: try cells[4].decode(String.self), role: try cells[5].decode(String?.self),
                content: try cells[6].decode(String?.self), data: try cells[7].decode(String.self),
                createdAt: try cells[8].decode(Int64.self))
        }
    }

    public func turn(run runId: String, chatId: String, user: String) async throws -> TurnRecord? {
        _ = try await session(chatId, user: user)
        let rows = try await client.query(
            """
            SELECT run_id, chat_id, message_id, status, pattern, answer, failed_roles::text, usage::text, finished_at FROM turns
            WHERE chat_id = \(chatId) AND run_id = \(runId)
            """, logger: logger
        ).collect()
        return try rows.first.map { row in
            let cells = row.makeRandomAccess()
            return TurnRecord(
                runId: try cells[0].decode(String.self), chatId: try cells[1].decode(String.self),
                messageId: try cells[2].decode(String?.self), status: try cells[3].decode(String.self),
                pattern: try cells[4].decode(String?.self), answer: try cells[5].decode(String?.self),
                failedRoles: try cells[6].decode(String.self), usage: try cells[7].decode(String.self),
                finishedAt: try cells[8].decode(Int64.self))
        }
    }

    // MARK: Statistics

    public struct Statistics: Codable, Sendable, Equatable {
        public var sessions: Int
        public var messages: Int
        public var userMessages: Int
        public var botMessages: Int
        public var sessionsByType: [String: Int]
    }

    public func statistics(user: String) async throws -> Statistics {
        var byType: [String: Int] = [:]
        var sessions = 0
        for try await (type, count) in try await client.query(
            "SELECT chat_type, count(*)::int8 FROM sessions WHERE user_id = \(user) GROUP BY chat_type", logger: logger
        ).decode((String, Int).self) {
            byType[type] = count
            sessions += count
        }
        var human = 0
        var bot = 0
        for try await (isBot, count) in try await client.query(
            """
            SELECT m.is_bot, count(*)::int8 FROM messages m JOIN sessions s ON s.chat_id = m.chat_id
            WHERE s.user_id = \(user) GROUP BY m.is_bot
            """, logger: logger
        ).decode((Bool, Int).self) {
            if isBot { bot = count } else { human = count }
        }
        return Statistics(
            sessions: sessions, messages: human + bot, userMessages: human, botMessages: bot, sessionsByType: byType)
    }

    /// Messages of one session of the user's, or of all of them.
    public func messageCount(user: String, chatId: String? = nil) async throws -> Int {
        if let chatId {
            return try await session(chatId, user: user).messageCount
        }
        for try await count in try await client.query(
            "SELECT COALESCE(sum(message_count), 0)::int8 FROM sessions WHERE user_id = \(user)", logger: logger
        ).decode(Int.self) {
            return count
        }
        return 0
    }

    // MARK: Rows

    private func binds(_ values: String...) -> PostgresBindings {
        var bindings = PostgresBindings()
        for value in values { bindings.append(value) }
        return bindings
    }

    static func session(_ row: PostgresRow) throws -> SessionRecord {
        let cells = row.makeRandomAccess()
        return SessionRecord(
            chatId: try cells[0].decode(String.self), userId: try cells[1].decode(String.self),
            flowId: try cells[2].decode(String?.self), chatType: try cells[3].decode(String.self),
            topic: try cells[4].decode(String?.self), logo: try cells[5].decode(String?.self),
            state: try cells[6].decode(String.self), messageCount: try cells[7].decode(Int.self),
            createdAt: try cells[8].decode(Int64.self), updatedAt: try cells[9].decode(Int64.self))
    }

    static func message(_ row: PostgresRow) throws -> MessageRecord {
        let cells = row.makeRandomAccess()
        return MessageRecord(
            seq: try cells[0].decode(Int64.self), id: try cells[1].decode(String.self),
            chatId: try cells[2].decode(String.self),
            flowId: try cells[3].decode(String?.self), chatType: try cells[4].decode(String.self),
            userId: try cells[5].decode(String?.self), isBot: try cells[6].decode(Bool.self),
            author: try cells[7].decode(String.self), content: try cells[8].decode(String.self),
            extra: try cells[9].decode(String.self), source: try cells[10].decode(Int.self),
            runId: try cells[11].decode(String?.self), status: try cells[12].decode(String?.self),
            usage: try cells[13].decode(String?.self), createdAt: try cells[14].decode(Int64.self))
    }
}
