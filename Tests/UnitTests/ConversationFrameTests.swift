import Foundation
import SwitchboardContracts
import Testing

/// A value as a client receives it: the JSON value it encodes to, with sorted keys.
func sortedJSON(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(JSONValueEncoder().encode(value)), as: UTF8.self)
}

/// The gateway's own chat-centre frames and the commands the CLI sends, field for field as they were
/// when built by hand.
@Suite struct ConversationFrameTests {
    @Test func presenceAndTypingNameTheConversationAndUser() throws {
        #expect(
            try sortedJSON(Presence(conversationId: "c", userId: "u", connectionId: "k"))
                == #"{"connectionId":"k","conversationId":"c","userId":"u"}"#)
        #expect(try sortedJSON(Typing(conversationId: "c", userId: "u")) == #"{"conversationId":"c","userId":"u"}"#)
        let event = try ClientEvent(
            channel: .conversation("c"), frameType: FrameType.presenceJoin,
            fields: Typing(conversationId: "c", userId: "u"), ephemeral: true)
        #expect(event.frameType == FrameType.presenceJoin && event.ephemeral)
    }

    @Test func pongMeasuresFromThePingsTimestamp() throws {
        let pong = try ServerFrame(correlationId: "p", payload: Pong(sent: 100, now: 250))
        #expect(pong.type == "PONG" && pong.correlationId == "p")
        #expect(try sortedJSON(pong.data) == #"{"latency":150,"serverTime":250,"timestamp":100}"#)
        #expect(Pong(sent: 300, now: 250).latency == 0)
    }

    @Test func aNotificationCarriesABroadcastOnlyWhenThereIsOne() throws {
        let notice = UserNotification(type: "info", title: "t", message: "m", persistent: false, from: "admin")
        #expect(
            try sortedJSON(notice) == #"{"from":"admin","message":"m","persistent":false,"title":"t","type":"info"}"#)
        var broadcast = notice
        broadcast.broadcast = ["text": "hello", "n": 1]
        #expect(
            try sortedJSON(broadcast)
                == #"{"broadcast":{"n":1,"text":"hello"},"from":"admin","message":"m","persistent":false,"title":"t","type":"info"}"#
        )
        #expect(try broadcast.data()[UserNotification.broadcastField] == ["text": "hello", "n": 1])
    }

    @Test func theRoleSnapshotListsTheTeamThenOtherRoles() throws {
        let snapshot = RoleStatusSnapshot(
            conversationId: "c",
            roles: [
                .init(role: "Alex", status: "IDLE", responsibility: "plans"), .init(role: "Zed", status: "THINKING"),
            ],
            team: "chat-centre")
        #expect(
            try sortedJSON(snapshot)
                == #"{"conversationId":"c","roles":[{"responsibility":"plans","role":"Alex","status":"IDLE"},{"role":"Zed","status":"THINKING"}],"team":"chat-centre"}"#
        )
        #expect(
            try sortedJSON(RoleStatusSnapshot(conversationId: "c", roles: [])) == #"{"conversationId":"c","roles":[]}"#)
        let frame = try ServerFrame(payload: snapshot, channel: "conversation:c")
        #expect(frame.type == FrameType.roleStatusSnapshot && frame.channel == "conversation:c")
    }

    @Test func historySendsEmptyFieldsAsNull() throws {
        let message = StoredMessage(
            id: "m1", conversationId: "c", role: "user", author: "ann", content: "hi", status: nil, runId: nil,
            usage: .null, extra: ["a": 1], createdAt: 1_700_000_000_000)
        #expect(
            try sortedJSON(
                ConversationHistory(conversationId: "c", messages: [message], hasMore: false, nextCursor: nil))
                == #"{"conversationId":"c","hasMore":false,"messages":[{"author":"ann","content":"hi","conversationId":"c","createdAt":1700000000000,"extra":{"a":1},"id":"m1","role":"user","runId":null,"status":null,"usage":null}],"nextCursor":null}"#
        )
        var answered = message
        answered.status = "completed"
        answered.runId = "r1"
        #expect(
            try sortedJSON(
                ConversationHistory(conversationId: "c", messages: [answered], hasMore: true, nextCursor: "x"))
                == #"{"conversationId":"c","hasMore":true,"messages":[{"author":"ann","content":"hi","conversationId":"c","createdAt":1700000000000,"extra":{"a":1},"id":"m1","role":"user","runId":"r1","status":"completed","usage":null}],"nextCursor":"x"}"#
        )
        #expect(ConversationHistory.frameType == "CONVERSATION_HISTORY")
    }

    @Test func acksSayWhatTheCommandDid() throws {
        #expect(try sortedJSON(ConversationAck(conversationId: "c")) == #"{"conversationId":"c"}"#)
        #expect(
            try sortedJSON(SubscriptionAck(conversationId: "c", recovered: false, position: nil))
                == #"{"conversationId":"c","recovered":false}"#)
        #expect(
            try sortedJSON(
                SubscriptionAck(conversationId: "c", recovered: true, position: StreamPosition(epoch: "e1", offset: 7)))
                == #"{"conversationId":"c","epoch":"e1","offset":7,"recovered":true}"#)
        #expect(
            try sortedJSON(MessageAck(messageId: "m", conversationId: "c"))
                == #"{"conversationId":"c","messageId":"m"}"#)
        #expect(try sortedJSON(InterruptAck(conversationId: "c")) == #"{"conversationId":"c","status":"stopping"}"#)
        #expect(
            try sortedJSON(RoleFocusAck(conversationId: "c", role: "Mike"))
                == #"{"conversationId":"c","role":"Mike","status":"focused"}"#)
        let ack = try ServerFrame.ack("cmd", ConversationAck(conversationId: "c"))
        #expect(ack.type == "ACK" && ack.correlationId == "cmd" && ack.data == ["conversationId": "c"])
    }

    @Test func theCLIsCommandsCarryTheirType() throws {
        let send = try ClientCommand(id: "s", payload: SendMessage(conversationId: "c", content: "hi"))
        #expect(send.type == ClientCommandType.sendMessage && send.id == "s")
        #expect(try sortedJSON(send.data) == #"{"content":"hi","conversationId":"c"}"#)
        let patterned = try ClientCommand(
            id: "s", payload: SendMessage(conversationId: "c", content: "hi", pattern: "parallel"))
        #expect(try sortedJSON(patterned.data) == #"{"content":"hi","conversationId":"c","pattern":"parallel"}"#)
        let subscribe = try ClientCommand(id: "sub", payload: SubscribeConversation(conversationId: "c"))
        #expect(subscribe.type == ClientCommandType.subscribeConversation)
        #expect(try sortedJSON(subscribe.data) == #"{"conversationId":"c"}"#)
        let resume = try ClientCommand(
            id: "sub",
            payload: SubscribeConversation(conversationId: "c", resumingAfter: StreamPosition(epoch: "e", offset: 3)))
        #expect(try sortedJSON(resume.data) == #"{"conversationId":"c","epoch":"e","offset":3}"#)
    }
}
