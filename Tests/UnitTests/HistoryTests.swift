import Foundation
import SwitchboardContracts
import SwitchboardStore
import Testing

@Suite struct HistoryStoreUnitTests {
    @Test func cursorsRoundTripAndForeignOnesAreRefused() throws {
        let cursor = Cursor(value: 1_763_000_000_123_456, tieBreaker: "chat:with:colons")
        #expect(try Cursor(encoded: cursor.encoded) == cursor)
        #expect(!cursor.encoded.contains("=") && !cursor.encoded.contains("/") && !cursor.encoded.contains("+"))
        for bad in ["", "!!!", Data("no-colon".utf8).base64EncodedString(), Data("x:1".utf8).base64EncodedString()] {
            let error = #expect(throws: StoreError.self) { try Cursor(encoded: bad) }
            #expect(error?.code == .invalidArgument)
        }
    }

    @Test func pendingMigrationsAreTheUnappliedOnesInOrder() throws {
        let migrations = [Migration(version: 1, name: "a", sql: ""), Migration(version: 2, name: "b", sql: "")]
        #expect(try Schema.pending(applied: [], migrations: migrations).map(\.version) == [1, 2])
        #expect(try Schema.pending(applied: [1], migrations: migrations).map(\.version) == [2])
        #expect(try Schema.pending(applied: [1, 2], migrations: migrations).isEmpty)
        // A database migrated by a newer build is refused, not silently used.
        #expect(throws: StoreError.self) { try Schema.pending(applied: [1, 2, 3], migrations: migrations) }
        #expect(throws: StoreError.self) { try Schema.pending(applied: [], migrations: migrations.reversed()) }
    }

    @Test func aMigrationRunsStatementByStatement() {
        let migration = Migration(version: 1, name: "x", sql: "CREATE TABLE a (x int);\nCREATE INDEX i ON a (x);\n")
        #expect(migration.statements == ["CREATE TABLE a (x int)", "CREATE INDEX i ON a (x)"])
        #expect(Schema.migrations[0].statements.count == 10)
    }

    @Test func configurationComesFromAPostgresURL() throws {
        let configuration = try StoreConfiguration(url: "postgres://switchboard:p%40ss@db.local:5440/history")
        #expect(configuration.host == "db.local" && configuration.port == 5440)
        #expect(
            configuration.username == "switchboard" && configuration.password == "p@ss"
                && configuration.database == "history")
        let error = #expect(throws: StoreError.self) { try StoreConfiguration(url: "mysql://x@y/z") }
        #expect(error?.code == .invalidConfiguration)
    }

    @Test func queriesAndChangesAreValidated() throws {
        var query = SessionQuery()
        query.limit = 101
        #expect(throws: StoreError.self) { try query.validated() }
        query.limit = 100
        query.chatType = "CHAT"
        #expect(throws: StoreError.self) { try query.validated() }
        query.chatType = "LINSIGHT"
        #expect(try query.validated().limit == 100)
        #expect(throws: StoreError.self) { try SessionChanges(topic: String(repeating: "x", count: 201)).validate() }
        #expect(throws: StoreError.self) { try NewSession(chatId: "c", userId: "u", chatType: "OTHER").validated() }
    }

    private func event(_ channel: Channel, _ type: String, _ data: JSONValue, ephemeral: Bool = false) -> Envelope<
        ClientEvent
    > {
        Envelope(
            time: 42, routingKey: channel.id, source: EventSource(service: "t", instance: "t"),
            payload: ClientEvent(channel: channel, frameType: type, data: data, ephemeral: ephemeral))
    }

    private func event(_ channel: Channel, _ payload: some FramePayload) throws -> Envelope<ClientEvent> {
        event(channel, payload.frameType, try payload.data())
    }

    @Test func onlyTheConversationChannelsDurableEventsAreKept() throws {
        let thinking = RoleStatusChange(
            conversationId: "c", role: "Alex", status: "THINKING", previousStatus: "IDLE", reason: "task assigned")
        // The role-activity copy of a status change is the same step again; chunks are not kept one by one.
        #expect(try HistoryMapper.writes(for: event(.roles("c"), thinking)).isEmpty)
        let chunk = FallbackReplyChunk(messageId: "reply-m1", conversationId: "c", chunk: "x", role: "Catherine")
        #expect(try HistoryMapper.writes(for: event(.conversation("c"), chunk)).isEmpty)
        #expect(try HistoryMapper.writes(for: event(.conversation("c"), "TYPING", [:], ephemeral: true)).isEmpty)
        #expect(try HistoryMapper.writes(for: event(.user("u"), FrameType.userNotification, [:])).isEmpty)
        let status = try HistoryMapper.writes(for: event(.conversation("c"), thinking))
        guard case .part(let part) = status.first else { Issue.record("no part: \(status)"); return }
        #expect(part.kind == "role_status" && part.role == "Alex" && part.content == "THINKING" && part.createdAt == 42)
    }

    @Test func theEndOfAReplyBecomesAMessageWithItsStatusAndUsage() throws {
        let end = MessageStreamEnd(
            messageId: "reply-m1",
            finalMessage: .init(id: "reply-m1", conversationId: "c", role: "Catherine", content: "partial"),
            metadata: .init(chunks: 4, durationMs: 900, engine: "openai", status: "failed", error: "timeout"))
        let writes = try HistoryMapper.writes(for: event(.conversation("c"), end))
        let reply = writes.compactMap { write -> AssistantMessageWrite? in
            if case .assistantMessage(let reply) = write { return reply } else { return nil }
        }.first
        #expect(reply?.status == "failed" && reply?.content == "partial" && reply?.runId == "m1")
        #expect(reply?.usage == #"{"chunks":4,"durationMs":900}"#)
        #expect(reply?.extra == #"{"engine":"openai","error":"timeout"}"#)
        #expect(writes.contains(.sessionState(chatId: "c", state: .waitingForInput, at: 42)))
    }

    /// An event that is not its frame type's shape is not written half-filled: the recorder's batch fails
    /// and the message is dead-lettered (a `DecodingError` is poison).
    @Test func anEventNotOfItsTypesShapeThrows() {
        let misshapen: [(String, JSONValue)] = [
            (FrameType.messageStreamEnd, ["messageId": "reply-m1"]),
            (FrameType.roleStatusChange, ["role": "Alex"]),
            (FrameType.collaborationComplete, ["runId": "m1", "result": "done"]),
        ]
        for (type, data) in misshapen {
            #expect(throws: DecodingError.self) { try HistoryMapper.writes(for: event(.conversation("c"), type, data)) }
        }
    }

    @Test func aUserMessageKeepsItsCommandIdAndChoices() {
        let envelope = Envelope(
            time: 7, routingKey: "c", source: EventSource(service: "gateway", instance: "g"),
            payload: ChatMessageSubmitted(
                messageId: "m", clientMessageId: "cmd", conversationId: "c", userId: "alice", content: "hi",
                gateway: "g",
                pattern: "parallel"))
        guard case .userMessage(let message) = HistoryMapper.writes(for: envelope).first else {
            Issue.record("no user message")
            return
        }
        #expect(message.eventId == envelope.id && message.userId == "alice" && message.createdAt == 7)
        #expect(message.extra == #"{"clientMessageId":"cmd","pattern":"parallel"}"#)
    }
}
