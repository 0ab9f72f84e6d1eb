import SwitchboardContracts
import SwitchboardStore
import Testing

@testable import Orchestrator

@Suite struct OrchestratorHistoryContextTests {
    private func message(_ id: String, bot: Bool, _ content: String) -> MessageRecord {
        MessageRecord(
            seq: 0, id: id, chatId: "c", flowId: nil, chatType: "NORMAL", userId: "u", isBot: bot,
            author: bot ? "Catherine" : "u",
            content: content, extra: "{}", source: 0, runId: nil, status: bot ? "completed" : nil, usage: nil,
            createdAt: 0)
    }

    @Test func storedMessagesBecomeTheRolesContextWithoutTheMessageBeingAnswered() {
        let messages = [
            message("m1", bot: false, "first"), message("reply-m1", bot: true, "answer"),
            message("m2", bot: false, "second"),
            message("reply-m2", bot: true, ""), message("m3", bot: false, "being answered"),
        ]
        let turns = HistoryContext.turns(from: messages, excluding: "m3", limit: 2)
        // Oldest first, the newest `limit`; an empty (failed) reply is no context.
        #expect(
            turns == [
                ConversationTurn(role: "assistant", content: "answer"),
                ConversationTurn(role: "user", content: "second"),
            ])
    }
}
