import SwitchboardContracts
import SwitchboardStore

// The `data` of Bisheng's frames (`BishengFrames`): those the chat socket answers with, and those a
// conversation's frames become (each made from the contract's payload, Frames/ in SwitchboardContracts).

extension BishengFrames {
    /// Every frame: `trace_id` is `null` when there is none.
    struct Frame<Data: Encodable & Sendable>: Encodable, Sendable {
        var type: String
        var data: Data
        @ExplicitNull var traceID: String?

        enum CodingKeys: String, CodingKey {
            case type, data, traceID = "trace_id"
        }
    }

    /// `start`: the socket follows the chat; `resumed` when the session had begun before.
    struct Start: Encodable, Sendable, Equatable {
        var chatID: String
        var flowID: String
        var chatType: String
        var state: String
        var messageCount: Int
        var resumed: Bool
        /// Switchboard's, on a reconnect only: whether what was missed since the last socket of this chat follows.
        var replayed: Bool?

        init(chatID: String, flowID: String, session: SessionRecord, replayed: Bool?) {
            self.chatID = chatID
            self.flowID = flowID
            chatType = session.chatType
            state = session.state
            messageCount = session.messageCount
            resumed = session.messageCount > 0 || session.state != SessionState.initialised.rawValue
            self.replayed = replayed
        }

        enum CodingKeys: String, CodingKey {
            case chatID = "chat_id", flowID = "flow_id", chatType = "chat_type", state,
                messageCount = "message_count", resumed, replayed
        }
    }

    /// `progress` of Switchboard's own: a message `accepted`, or `pong`.
    struct Progress: Encodable, Sendable, Equatable {
        var stage: String
        var messageID: String?
        var chatID: String?

        enum CodingKeys: String, CodingKey {
            case stage, messageID = "message_id", chatID = "chat_id"
        }
    }

    /// `interrupt`: the chat's run is `stopping`.
    struct ChatStatus: Encodable, Sendable, Equatable {
        var chatID: String
        var status: String

        enum CodingKeys: String, CodingKey {
            case chatID = "chat_id", status
        }
    }

    /// `end`: the session is `ended`.
    struct ChatState: Encodable, Sendable, Equatable {
        var chatID: String
        var state: String

        enum CodingKeys: String, CodingKey {
            case chatID = "chat_id", state
        }
    }

    /// `error`: what failed; a role's failure names the role, a message not taken its id.
    struct Failure: Encodable, Sendable, Equatable {
        var code: String
        var message: String
        var role: String?
        var messageID: String?

        init(code: String, message: String) {
            self.code = code
            self.message = message
        }

        /// A role's answer failed (AGENT_ERROR).
        init(_ failure: AgentError) {
            self.init(code: "AGENT_ERROR", message: failure.event.payload.error)
            role = failure.ids.role
        }

        /// The conversation did not take the message (MESSAGE_REJECTED).
        init(_ rejection: MessageRejected) {
            self.init(code: "BUSY", message: "the session is answering another message")
            messageID = rejection.messageId
        }

        enum CodingKeys: String, CodingKey {
            case code, message, role, messageID = "message_id"
        }
    }

    /// `message`: one chunk of the reply.
    struct Message: Encodable, Sendable, Equatable {
        var messageID: String
        var role: String
        var chunk: String
        /// The chunk's character offset in the reply.
        var position: Int

        init(_ chunk: MessageStreamChunk) {
            messageID = chunk.ids.messageId
            role = chunk.ids.role
            self.chunk = chunk.chunk
            position = chunk.position
        }

        init(_ chunk: FallbackReplyChunk) {
            messageID = chunk.messageId
            role = chunk.role
            self.chunk = chunk.chunk
            position = chunk.position
        }

        enum CodingKeys: String, CodingKey {
            case messageID = "message_id", role, chunk, position
        }
    }

    /// `result`: the reply's whole text, and how it ended (`completed`, `stopped`, `failed`).
    struct ReplyResult: Encodable, Sendable, Equatable {
        var messageID: String
        var role: String
        var content: String
        var status: String

        init(_ end: MessageStreamEnd) {
            messageID = end.messageId
            role = end.finalMessage.role
            content = end.finalMessage.content
            status = end.metadata.status ?? "completed"
        }

        enum CodingKeys: String, CodingKey {
            case messageID = "message_id", role, content, status
        }
    }

    /// `end` of a run: its outcome (`completed`, `partial`, …).
    struct RunEnd: Encodable, Sendable, Equatable {
        var messageID: String
        var status: String

        init(_ complete: CollaborationComplete) {
            messageID = complete.messageId
            status = complete.result.status
        }

        enum CodingKeys: String, CodingKey {
            case messageID = "message_id", status
        }
    }

    /// `progress` for every other conversation frame: its fields as they came, and its frame type as `event`.
    struct PassedOn: Encodable, Sendable {
        var event: String
        var fields: [String: JSONValue]

        func encode(to encoder: any Encoder) throws {
            try fields.merging(["event": JSONValue.string(event)]) { _, event in event }.encode(to: encoder)
        }
    }

    /// The run a conversation frame belongs to, by the first id it carries of: its run, the message it
    /// answers, a reply's (`reply-<run>`).
    struct RunReference: Decodable {
        var runId: String?
        var inReplyTo: String?
        var messageId: String?

        var runID: String? {
            if let runId, !runId.isEmpty { return runId }
            if let inReplyTo { return inReplyTo }
            return messageId.flatMap(ReplyID.answered(by:))
        }
    }
}
