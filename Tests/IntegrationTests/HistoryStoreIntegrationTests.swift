import Foundation
import Logging
import PostgresNIO
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardStore
import SwitchboardTestSupport
import Testing

/// Runs `body` against a store in a schema of its own (dropped afterwards), migrated.
func withHistoryStore<T: Sendable>(
    migrate: Bool = true, _ body: @Sendable (HistoryStore, StoreConfiguration) async throws -> T
) async throws -> T {
    try await TestEnvironment.requirePostgres()
    let schema = "sbtest_\(UUID().uuidString.prefix(8).lowercased())"
    let base = try StoreConfiguration(url: TestEnvironment.postgresURL)
    try await withRunning(HistoryStore(configuration: base, logger: TestEnvironment.logger)) { admin in
        try await admin.client.query(PostgresQuery(unsafeSQL: "CREATE SCHEMA \(schema)"))
    }
    var isolated = base
    isolated.schema = schema
    let configuration = isolated
    do {
        let result = try await withRunning(HistoryStore(configuration: configuration, logger: TestEnvironment.logger)) {
            store in
            if migrate { try await store.migrate() }
            return try await body(store, configuration)
        }
        try await dropSchema(schema, base)
        return result
    } catch {
        try? await dropSchema(schema, base)
        throw error
    }
}

private func dropSchema(_ schema: String, _ base: StoreConfiguration) async throws {
    try await withRunning(HistoryStore(configuration: base, logger: TestEnvironment.logger)) { admin in
        try await admin.client.query(PostgresQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"))
    }
}

/// Runs the store's pool around `body`.
func withRunning<T: Sendable>(_ store: HistoryStore, _ body: @Sendable (HistoryStore) async throws -> T) async throws
    -> T
{
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await store.run() }
        defer { group.cancelAll() }
        return try await body(store)
    }
}

private func userMessage(
    _ chat: String, user: String, id: String, content: String, at time: Int64, event: UUID = UUID()
)
    -> Envelope<ChatMessageSubmitted>
{
    Envelope(
        id: event, time: time, routingKey: chat, source: EventSource(service: "gateway", instance: "t"),
        payload: ChatMessageSubmitted(
            messageId: id, clientMessageId: "c-\(id)", conversationId: chat, userId: user, content: content,
            gateway: "t"))
}

private func clientEvent(_ chat: String, _ payload: some FramePayload, at time: Int64) throws -> Envelope<ClientEvent> {
    Envelope(
        time: time, routingKey: chat, source: EventSource(service: "agent-worker", instance: "t"),
        payload: try ClientEvent(channel: .conversation(chat), payload: payload))
}

/// The end of the reply to `message` in `chat`.
private func replyEnd(
    _ chat: String, answering message: String, role: String, content: String, _ metadata: MessageStreamEnd.Metadata,
    at time: Int64
) throws -> Envelope<ClientEvent> {
    let id = ReplyID.answering(message)
    return try clientEvent(
        chat,
        MessageStreamEnd(
            messageId: id, finalMessage: .init(id: id, conversationId: chat, role: role, content: content),
            metadata: metadata), at: time)
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct HistoryStoreIntegrationTests {
    @Test func migrationsApplyOnceEvenWhenTwoProcessesStartTogether() async throws {
        try await withHistoryStore(migrate: false) { _, configuration in
            let stores = (0..<3).map { _ in HistoryStore(configuration: configuration, logger: TestEnvironment.logger) }
            let applied = try await withThrowingTaskGroup(of: [Int].self) { group in
                for store in stores {
                    group.addTask { try await withRunning(store) { try await $0.migrate() } }
                }
                var all: [[Int]] = []
                for try await versions in group { all.append(versions) }
                return all
            }
            // Exactly one of them applied each migration; the others found nothing to do.
            #expect(applied.flatMap { $0 }.sorted() == Schema.migrations.map(\.version))
            // A pool runs once: a fresh store, as a restarted process would have.
            let (again, versions) = try await withRunning(
                HistoryStore(configuration: configuration, logger: TestEnvironment.logger)
            ) { store in
                (try await store.migrate(), try await store.schemaVersions())
            }
            #expect(again.isEmpty)
            #expect(versions == Schema.migrations.map(\.version))
        }
    }

    @Test func theSameEventTwiceStoresOneRow() async throws {
        try await withHistoryStore { store, _ in
            let message = userMessage("chat-1", user: "alice", id: "m1", content: "hello", at: 1_000)
            for _ in 0..<2 { try await store.apply(HistoryMapper.writes(for: message)) }
            let end = try replyEnd(
                "chat-1", answering: "m1", role: "Catherine", content: "hi there", .init(chunks: 2, engine: "offline"),
                at: 2_000)
            for _ in 0..<2 { try await store.apply(HistoryMapper.writes(for: end)) }
            let page = try await store.messages("chat-1", user: "alice")
            #expect(page.items.map(\.id) == ["reply-m1", "m1"])
            #expect(page.items.first?.status == "completed")
            #expect(page.items.first?.runId == "m1")
            #expect(try await store.session("chat-1", user: "alice").messageCount == 2)
        }
    }

    /// The reply travels on another topic than the message it answers and can be stored first (seen
    /// in CI): the session created afterwards counts it and gives it its user.
    @Test(arguments: [1, 3]) func aReplyStoredBeforeItsSessionIsCountedAndAdopted(batch: Int) async throws {
        try await withHistoryStore { store, _ in
            let end = try replyEnd(
                "chat-e", answering: "e1", role: "Catherine", content: "early", .init(chunks: 1, engine: "offline"),
                at: 2_000)
            try await store.apply(HistoryMapper.writes(for: end))
            let messages = (1...batch).map {
                userMessage("chat-e", user: "erin", id: "e\($0)", content: "hi \($0)", at: Int64($0))
            }
            try await store.apply(messages.flatMap { HistoryMapper.writes(for: $0) })
            #expect(try await store.session("chat-e", user: "erin").messageCount == batch + 1)
            let page = try await store.messages("chat-e", user: "erin")
            #expect(page.items.count == batch + 1)
            #expect(page.items.allSatisfy { $0.userId == "erin" })
            // The reply ended after the messages: the session waits for the user, not "in progress"
            // for good (seen in CI: BishengChatTests' restored session said in_progress).
            #expect(try await store.session("chat-e", user: "erin").state == SessionState.waitingForInput.rawValue)
            // A message after the reply is the session's next turn.
            try await store.apply(
                HistoryMapper.writes(for: userMessage("chat-e", user: "erin", id: "e-late", content: "more", at: 3_000))
            )
            #expect(try await store.session("chat-e", user: "erin").state == SessionState.inProgress.rawValue)
        }
    }

    @Test func aTurnStoppedMidStreamIsStoredAsStoppedWithItsPartialTextAndParts() async throws {
        try await withHistoryStore { store, _ in
            try await store.apply(
                HistoryMapper.writes(for: userMessage("c", user: "bob", id: "m9", content: "write an essay", at: 10)))
            let ids = ReplyIDs(messageId: "reply-m9-kulu", conversationId: "c", role: "Kulu", runId: "m9")
            let events: [Envelope<ClientEvent>] = [
                try clientEvent(
                    "c",
                    RoleStatusChange(
                        conversationId: "c", role: "Alex", status: "ANALYZING", previousStatus: "IDLE",
                        reason: "task assigned"), at: 20),
                try clientEvent(
                    "c",
                    MessageStreamStart(messageId: "reply-m9", conversationId: "c", role: "Catherine", inReplyTo: "m9"),
                    at: 30),
                try clientEvent(
                    "c",
                    AgentError(
                        ids: ids,
                        payload: .init(
                            error: "model down", errorType: "http", context: .init(agentSource: "Kulu"), retryCount: 3)),
                    at: 35),
                try replyEnd(
                    "c", answering: "m9", role: "Catherine", content: "Once upon a",
                    .init(chunks: 3, engine: "offline", status: "stopped"), at: 40),
                try clientEvent(
                    "c",
                    CollaborationComplete(
                        conversationId: "c", runId: "m9", messageId: "m9", pattern: .sequential,
                        result: .init(
                            status: "stopped", answer: "Once upon a", answeredBy: "Catherine", failedRoles: ["Kulu"],
                            note: ""),
                        contributions: [
                            RoleContribution(role: "Alex", status: "completed", content: "an essay is asked"),
                            RoleContribution(role: "Catherine", status: "stopped", content: "Once upon a"),
                        ], duration: 30), at: 50),
            ]
            for event in events { try await store.apply(HistoryMapper.writes(for: event)) }
            let reply = try #require(try await store.messages("c", user: "bob").items.first)
            #expect(
                reply.isBot && reply.status == "stopped" && reply.content == "Once upon a"
                    && reply.author == "Catherine")
            // Dated by its start, so it sorts after the user's message and before anything later.
            #expect(reply.createdAt == 30)
            #expect(try await store.session("c", user: "bob").state == SessionState.interrupted.rawValue)
            let turn = try #require(try await store.turn(run: "m9", chatId: "c", user: "bob"))
            #expect(turn.status == "stopped" && turn.pattern == "sequential")
            let parts = try await store.parts(run: "m9", chatId: "c", user: "bob")
            #expect(parts.map(\.kind) == ["stream_start", "error", "stream_end", "text", "text"])
            #expect(parts.filter { $0.kind == "text" }.map(\.role) == ["Alex", "Catherine"])
        }
    }

    @Test func paginationReturnsEveryMessageExactlyOnceInOrder() async throws {
        try await withHistoryStore { store, _ in
            // Some share a timestamp: the sequence number breaks the tie.
            let ids = (0..<237).map { "m\($0)" }
            for (index, id) in ids.enumerated() {
                try await store.apply(
                    HistoryMapper.writes(
                        for: userMessage("p", user: "alice", id: id, content: id, at: Int64(index / 3))))
            }
            var seen: [String] = []
            var cursor: Cursor?
            var pages = 0
            repeat {
                let page = try await store.messages("p", user: "alice", before: cursor, limit: 50)
                seen += page.items.map(\.id)
                cursor = try page.nextCursor.map { try Cursor(encoded: $0) }
                pages += 1
            } while cursor != nil
            #expect(pages == 5)
            #expect(seen == ids.reversed())
        }
    }

    @Test func anotherUsersSessionIsForbiddenAndAMissingOneNotFound() async throws {
        try await withHistoryStore { store, _ in
            try await store.apply(
                HistoryMapper.writes(for: userMessage("mine", user: "alice", id: "a1", content: "secret", at: 1)))
            for call in [
                { _ = try await store.session("mine", user: "mallory") },
                { _ = try await store.messages("mine", user: "mallory") },
                { _ = try await store.updateSession("mine", user: "mallory", changes: SessionChanges(topic: "x")) },
                { try await store.deleteSession("mine", user: "mallory") },
                { try await store.deleteMessage("a1", user: "mallory") },
            ] as [@Sendable () async throws -> Void] {
                let error = await #expect(throws: StoreError.self) { try await call() }
                #expect(error?.code == .forbidden)
            }
            let missing = await #expect(throws: StoreError.self) { _ = try await store.session("nope", user: "alice") }
            #expect(missing?.code == .notFound)
            #expect(try await store.session("mine", user: "alice").topic == "secret")
        }
    }

    @Test func sessionsAreListedByCursorFilteredRenamedAndDeleted() async throws {
        try await withHistoryStore { store, _ in
            for index in 0..<7 {
                _ = try await store.createSession(
                    NewSession(chatId: "s\(index)", userId: "alice", chatType: index % 2 == 0 ? "NORMAL" : "WORKFLOW"),
                    now: Int64(100 + index))
            }
            _ = try await store.createSession(NewSession(chatId: "other", userId: "bob"), now: 500)
            var query = SessionQuery()
            query.sort = .created
            query.limit = 3
            var listed: [String] = []
            repeat {
                let page = try await store.listSessions(user: "alice", query: query)
                listed += page.items.map(\.chatId)
                query.cursor = try page.nextCursor.map { try Cursor(encoded: $0) }
            } while query.cursor != nil
            #expect(listed == (0..<7).reversed().map { "s\($0)" })
            var workflows = SessionQuery()
            workflows.chatType = "WORKFLOW"
            #expect(
                try await store.listSessions(user: "alice", query: workflows).items.map(\.chatId) == ["s5", "s3", "s1"])
            let renamed = try await store.updateSession(
                "s1", user: "alice", changes: SessionChanges(topic: "Renamed"), now: 900)
            #expect(renamed.topic == "Renamed" && renamed.updatedAt == 900)
            #expect(try await store.listSessions(user: "alice", query: SessionQuery()).items.first?.chatId == "s1")
            try await store.deleteSession("s1", user: "alice")
            let gone = await #expect(throws: StoreError.self) { _ = try await store.session("s1", user: "alice") }
            #expect(gone?.code == .notFound)
            let statistics = try await store.statistics(user: "alice")
            #expect(statistics.sessions == 6 && statistics.sessionsByType["WORKFLOW"] == 2)
        }
    }

    /// The persistence consumer's batches: many user messages in one transaction store the same rows
    /// as one event at a time, a repeated event (in the batch or stored before) adds nothing, and an
    /// event of another kind in between keeps its place.
    @Test func aBatchOfUserMessagesStoresEachOnceInOrder() async throws {
        try await withHistoryStore { store, _ in
            let first = userMessage("b1", user: "carl", id: "b1-0", content: "first", at: 100)
            try await store.apply(HistoryMapper.writes(for: first))
            var batch = HistoryMapper.writes(for: first)
            for index in 1..<6 {
                batch += HistoryMapper.writes(
                    for: userMessage(
                        "b1", user: "carl", id: "b1-\(index)", content: "m\(index)", at: 100 + Int64(index)))
            }
            let other = userMessage("b2", user: "dora", id: "b2-0", content: "hello b2", at: 150)
            batch += HistoryMapper.writes(for: other) + HistoryMapper.writes(for: other)
            let interrupt = Envelope(
                time: 160, routingKey: "b1", source: EventSource(service: "gateway", instance: "t"),
                payload: ChatInterruptRequested(conversationId: "b1", userId: "carl", requestId: "r", gateway: "t"))
            batch += HistoryMapper.writes(forInterrupt: interrupt)
            batch += HistoryMapper.writes(for: userMessage("b2", user: "dora", id: "b2-1", content: "again", at: 170))
            try await store.apply(batch)
            try await store.apply(batch)  // the whole batch redelivered

            let b1 = try await store.session("b1", user: "carl")
            #expect(b1.messageCount == 6 && b1.state == "interrupted" && b1.topic == "first")
            #expect(
                try await store.messages("b1", user: "carl").items.map(\.id) == (0..<6).reversed().map { "b1-\($0)" })
            let b2 = try await store.session("b2", user: "dora")
            #expect(b2.messageCount == 2 && b2.topic == "hello b2" && b2.state == "in_progress" && b2.updatedAt == 170)
            #expect(try await store.messages("b2", user: "dora").items.map(\.content) == ["again", "hello b2"])
        }
    }

    /// Workflow runs for history: a later state replaces an earlier one, never the reverse (a late
    /// retry); node checkpoints likewise; the per-user list pages newest first.
    @Test func workflowRunsAreArchivedWithTheirNodesAndListedPerUser() async throws {
        try await withHistoryStore { store, _ in
            func run(_ id: String, _ user: String, _ status: String, created: Int64, updated: Int64) -> ArchivedRun {
                ArchivedRun(
                    runId: id, userId: user, sessionId: "s", status: status, recordJSON: #"{"status":"\#(status)"}"#,
                    createdAt: created, updatedAt: updated)
            }
            try await store.saveRun(run("r1", "ann", "queued", created: 10, updated: 10))
            try await store.saveRun(run("r1", "ann", "completed", created: 10, updated: 30))
            try await store.saveRun(run("r1", "ann", "running", created: 10, updated: 20))  // late
            let stored = try #require(try await store.archivedRun("r1"))
            #expect(stored.status == "completed" && stored.recordJSON == #"{"status": "completed"}"#)
            #expect(try await store.archivedRun("nope") == nil)

            try await store.saveNodeCheckpoint(
                runId: "r1", nodeId: "a", status: "running", checkpointJSON: #"{"n":1}"#, at: 11)
            try await store.saveNodeCheckpoint(
                runId: "r1", nodeId: "a", status: "completed", checkpointJSON: #"{"n":2}"#, at: 12)
            try await store.saveNodeCheckpoint(
                runId: "r1", nodeId: "b", status: "skipped", checkpointJSON: #"{"n":3}"#, at: 12)
            #expect(try await store.nodeCheckpoints(runId: "r1") == ["a": #"{"n": 2}"#, "b": #"{"n": 3}"#])

            for index in 2...5 {
                try await store.saveRun(run("r\(index)", "ann", "completed", created: Int64(10 * index), updated: 99))
            }
            try await store.saveRun(run("x1", "bob", "completed", created: 1, updated: 1))
            let first = try await store.archivedRuns(ofUser: "ann", offset: 0, limit: 2)
            #expect(first.ids == ["r5", "r4"] && first.total == 5)
            #expect(try await store.archivedRuns(ofUser: "ann", offset: 4, limit: 2).ids == ["r1"])
            await #expect(throws: StoreError.self) {
                _ = try await store.archivedRuns(ofUser: "ann", offset: 0, limit: 0)
            }
        }
    }
}

/// What PostgresNIO throws when nothing listens is classified as a dependency outage, so consumers
/// wait for the database instead of dead-lettering history rows.
@Test func anUnreachablePostgreSQLIsADependencyOutageNotPoison() async throws {
    var configuration = try StoreConfiguration(url: TestEnvironment.postgresURL)
    configuration.port = 1  // nothing listens on port 1
    let failure = try await withRunning(HistoryStore(configuration: configuration, logger: TestEnvironment.logger)) {
        store -> (any Error)? in
        do {
            _ = try await store.schemaVersions()
            return nil
        } catch {
            return error
        }
    }
    let error = try #require(failure)
    #expect(FailureClassifier.kind(of: error) == .dependencyUnavailable, "\(String(reflecting: error))")
}
