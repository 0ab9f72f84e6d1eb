import Logging
import SwitchboardContracts
import SwitchboardStore

/// The roles' context when the conversation's record is not in Redis (a new orchestrator, a record
/// expired after a day, Redis restarted): the last messages from PostgreSQL seed the record, which
/// then caches them (and keeps them up to date) for every later step. Redis in front, PostgreSQL behind.
struct HistoryContext: Sendable {
    let store: HistoryStore
    let logger: Logger

    /// How long a run waits for its context. PostgreSQL's pool keeps a request waiting while it retries
    /// an unreachable server (a minute, until its circuit breaker trips), and the partition's other
    /// conversations wait behind the run: a device asked during a 10 s outage heard nothing for 60 s.
    static let deadline: Duration = .seconds(2)

    /// At most `limit` turns, oldest first, without the message being answered. Context is not worth
    /// failing a reply for: with PostgreSQL unreachable or slow the run starts without it (logged).
    func turns(conversation: String, excluding messageID: String, limit: Int) async -> [ConversationTurn] {
        let store = store
        let fetch = Task { try await store.recentMessages(conversation, limit: limit + 1) }
        let deadline = Task {
            try await Task.sleep(for: Self.deadline)
            fetch.cancel()
        }
        defer { deadline.cancel() }
        do {
            let messages = try await fetch.value
            return Self.turns(from: messages, excluding: messageID, limit: limit)
        } catch {
            logger.warning(
                "history unavailable; starting without earlier messages",
                metadata: ["conversation.id": "\(conversation)", "error": "\(error)"])
            return []
        }
    }

    static func turns(from messages: [MessageRecord], excluding messageID: String, limit: Int) -> [ConversationTurn] {
        let turns = messages.filter { $0.id != messageID && !$0.content.isEmpty }
            .map { ConversationTurn(role: $0.isBot ? "assistant" : "user", content: $0.content) }
        return Array(turns.suffix(limit))
    }
}
