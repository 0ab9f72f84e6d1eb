import Foundation

/// One step of the schema. Versions only grow; a released migration is never edited (add a new one).
public struct Migration: Sendable, Equatable {
    public var version: Int
    public var name: String
    public var sql: String

    public init(version: Int, name: String, sql: String) {
        self.version = version
        self.name = name
        self.sql = sql
    }

    /// The statements one by one (the extended protocol takes one per query): `sql` split where a
    /// semicolon ends a line, so a migration must not hold a function body with such a line.
    public var statements: [String] {
        sql.components(separatedBy: ";\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            .map { $0.hasSuffix(";") ? String($0.dropLast()) : $0 }.filter { !$0.isEmpty }
    }
}

/// The history schema (docs/history.md; workflow runs: docs/workflows.md). Times are microseconds since the Unix epoch in `bigint`
/// columns: exact, so keyset cursors compare what they were built from.
public enum Schema {
    /// Any fixed number shared by every process that migrates this database.
    static let advisoryLockKey: Int64 = 0x5342_4849_5354  // "SBHIST"

    public static let migrations: [Migration] = [
        Migration(
            version: 1, name: "sessions, messages, assistant turns and their parts",
            sql: """
                CREATE TABLE sessions (
                    chat_id       text PRIMARY KEY,
                    user_id       text NOT NULL,
                    flow_id       text,
                    chat_type     text NOT NULL DEFAULT 'NORMAL'
                                  CHECK (chat_type IN ('NORMAL', 'WORKFLOW', 'ASSISTANT', 'LINSIGHT')),
                    topic         text CHECK (char_length(topic) <= 200),
                    logo          text CHECK (char_length(logo) <= 500),
                    state         text NOT NULL DEFAULT 'initialised',
                    message_count integer NOT NULL DEFAULT 0,
                    created_at    bigint NOT NULL,
                    updated_at    bigint NOT NULL
                );
                CREATE INDEX sessions_by_user_created ON sessions (user_id, created_at DESC, chat_id DESC);
                CREATE INDEX sessions_by_user_updated ON sessions (user_id, updated_at DESC, chat_id DESC);

                CREATE TABLE messages (
                    seq        bigserial PRIMARY KEY,
                    id         text NOT NULL UNIQUE,
                    event_id   uuid NOT NULL UNIQUE,
                    chat_id    text NOT NULL,
                    flow_id    text,
                    chat_type  text NOT NULL DEFAULT 'NORMAL',
                    user_id    text,
                    is_bot     boolean NOT NULL,
                    author     text NOT NULL,
                    content    text NOT NULL,
                    extra      jsonb NOT NULL DEFAULT '{}',
                    source     smallint NOT NULL DEFAULT 0,
                    run_id     text,
                    status     text CHECK (status IN ('completed', 'stopped', 'failed')),
                    usage      jsonb,
                    created_at bigint NOT NULL
                );
                CREATE INDEX messages_by_chat_time ON messages (chat_id, created_at DESC, seq DESC);

                CREATE TABLE turns (
                    run_id       text PRIMARY KEY,
                    event_id     uuid NOT NULL UNIQUE,
                    chat_id      text NOT NULL,
                    message_id   text,
                    status       text NOT NULL,
                    pattern      text,
                    answer       text,
                    failed_roles jsonb NOT NULL DEFAULT '[]',
                    usage        jsonb NOT NULL DEFAULT '{}',
                    finished_at  bigint NOT NULL
                );
                CREATE INDEX turns_by_chat ON turns (chat_id);

                CREATE TABLE turn_parts (
                    id         text PRIMARY KEY,
                    chat_id    text NOT NULL,
                    run_id     text,
                    message_id text,
                    kind       text NOT NULL
                               CHECK (kind IN ('stream_start', 'text', 'role_status', 'tool_call', 'error', 'stream_end')),
                    role       text,
                    content    text,
                    data       jsonb NOT NULL DEFAULT '{}',
                    created_at bigint NOT NULL
                );
                CREATE INDEX turn_parts_by_chat_time ON turn_parts (chat_id, created_at);
                CREATE INDEX turn_parts_by_run ON turn_parts (run_id, created_at);
                """),
        // Times of workflow runs are epoch milliseconds, as in their records and events.
        Migration(
            version: 2, name: "workflow runs and their node checkpoints",
            sql: """
                CREATE TABLE workflow_runs (
                    run_id     text PRIMARY KEY,
                    user_id    text NOT NULL,
                    session_id text NOT NULL,
                    status     text NOT NULL,
                    record     jsonb NOT NULL,
                    created_at bigint NOT NULL,
                    updated_at bigint NOT NULL
                );
                CREATE INDEX workflow_runs_by_user ON workflow_runs (user_id, created_at DESC, run_id DESC);

                CREATE TABLE workflow_nodes (
                    run_id     text NOT NULL,
                    node_id    text NOT NULL,
                    status     text NOT NULL,
                    checkpoint jsonb NOT NULL,
                    updated_at bigint NOT NULL,
                    PRIMARY KEY (run_id, node_id)
                );
                """),
    ]

    /// The migrations not yet applied, in order. Refuses a database newer than this code.
    public static func pending(applied: Set<Int>, migrations: [Migration] = migrations) throws(StoreError)
        -> [Migration]
    {
        let known = Set(migrations.map(\.version))
        if let unknown = applied.subtracting(known).max() {
            throw StoreError(.migrationFailed, "the database has schema version \(unknown), unknown to this build")
        }
        let versions = migrations.map(\.version)
        guard versions == versions.sorted(), Set(versions).count == versions.count else {
            throw StoreError(.migrationFailed, "migration versions must be unique and ascending")
        }
        return migrations.filter { !applied.contains($0.version) }
    }
}
