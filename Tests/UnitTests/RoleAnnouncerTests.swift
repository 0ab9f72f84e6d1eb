import Foundation
import SwitchboardContracts
import SwitchboardRuntime
import Testing

/// The role frames, as the orchestrator and the agent-worker announce a role's steps: their order and
/// their JSON, field for field as the frames had it when built by hand.
@Suite struct RoleAnnouncerTests {
    let announcer = RoleAnnouncer(conversation: "c1", role: "Kulu")
    typealias Step = RoleStateStore.Step

    /// Each frame's type and `data` as a client receives it (the frame JSON has sorted keys).
    func rendered(_ frames: [any FramePayload]) throws -> [String] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try frames.map { "\($0.frameType) \(String(decoding: try encoder.encode($0.data()), as: UTF8.self))" }
    }

    @Test func enteringThinkingIsAStatusChangeThenItsStart() throws {
        let frames = announcer.frames(
            for: Step(from: .analyzing, to: .thinking), reason: "dispatched", thinking: .start(estimatedMs: 1500))
        #expect(
            try rendered(frames) == [
                #"ROLE_STATUS_CHANGE {"conversationId":"c1","previousStatus":"ANALYZING","reason":"dispatched","role":"Kulu","status":"THINKING"}"#,
                #"ROLE_THINKING_START {"conversationId":"c1","estimatedTime":1500,"role":"Kulu"}"#,
            ])
        // The agent-worker does not announce a start.
        #expect(
            announcer.frames(for: Step(from: .analyzing, to: .thinking), reason: "r", thinking: .end(actualMs: 0)).count
                == 1)
    }

    @Test func leavingThinkingIsItsEndThenAStatusChange() throws {
        let frames = announcer.frames(
            for: Step(from: .thinking, to: .responding), reason: "first tokens", thinking: .end(actualMs: 42))
        #expect(
            try rendered(frames) == [
                #"ROLE_THINKING_END {"actualTime":42,"conversationId":"c1","role":"Kulu"}"#,
                #"ROLE_STATUS_CHANGE {"conversationId":"c1","previousStatus":"THINKING","reason":"first tokens","role":"Kulu","status":"RESPONDING"}"#,
            ])
        // The orchestrator does not announce an end.
        #expect(
            announcer.frames(for: Step(from: .thinking, to: .idle), reason: "r", thinking: .start(estimatedMs: 0)).count
                == 1)
    }

    @Test func framesGoToTheConversationThenItsRoleActivity() {
        #expect(announcer.channels == [.conversation("c1"), .roles("c1")])
    }

    @Test func aPayloadMakesItsClientEvent() throws {
        let change = RoleStatusChange(
            conversationId: "c1", role: "Kulu", status: "IDLE", previousStatus: "RESPONDING", reason: "done")
        let event = try ClientEvent(channel: .roles("c1"), payload: change)
        #expect(event.frameType == FrameType.roleStatusChange)
        #expect(
            event.data == [
                "conversationId": "c1", "role": "Kulu", "status": "IDLE", "previousStatus": "RESPONDING",
                "reason": "done",
            ])
    }
}
