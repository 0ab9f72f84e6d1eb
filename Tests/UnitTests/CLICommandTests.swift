@testable import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRuntime
import Testing

@Suite struct ServiceEndpointsTests {
    @Test func runShDefaultsThenItsEnvironmentThenFlags() throws {
        let defaults = try ServiceEndpoints.resolve(host: nil, overrides: [], environment: [:])
        #expect(defaults.host == "127.0.0.1")
        #expect(defaults.baseURL(of: .gateway) == "http://127.0.0.1:8080")
        #expect(defaults.baseURL(of: .notifier) == "http://127.0.0.1:8085")

        let environment = ["SB_HTTP_HOST": "10.0.0.2", "SB_AGENT_WORKER_PORT": "9182", "SB_GATEWAY_PORT": "9180"]
        let resolved = try ServiceEndpoints.resolve(host: nil, overrides: ["gateway=7000"], environment: environment)
        #expect(resolved.baseURL(of: .agentWorker) == "http://10.0.0.2:9182")
        #expect(resolved.baseURL(of: .gateway) == "http://10.0.0.2:7000")
        #expect(try ServiceEndpoints.resolve(host: "h", overrides: [], environment: environment).host == "h")
        // Readiness is asked on the admin ports: the public port + 1000 unless set.
        #expect(defaults.adminURL(of: .gateway) == "http://127.0.0.1:9080")
        #expect(resolved.adminURL(of: .agentWorker) == "http://10.0.0.2:10182")
        #expect(resolved.adminURL(of: .gateway) == "http://10.0.0.2:8000")
        let admin = try ServiceEndpoints.resolve(
            host: nil, overrides: [], environment: ["SB_NOTIFIER_ADMIN_PORT": "7777"])
        #expect(admin.adminURL(of: .notifier) == "http://127.0.0.1:7777")
        #expect(admin.baseURL(of: .notifier) == "http://127.0.0.1:8085")
    }

    @Test(arguments: ["gateway", "gateway=", "gateway=http", "gateway=70000", "router=8080"])
    func badPortsAreRefused(pair: String) {
        #expect(throws: (any Error).self) {
            try ServiceEndpoints.resolve(host: nil, overrides: [pair], environment: [:])
        }
    }
}

@Suite struct RunWatcherTests {
    /// A conversation frame as the gateway sends it: the payload type the service built it from.
    static func frame(_ payload: some FramePayload) throws -> ServerFrame {
        ServerFrame(type: payload.frameType, data: try payload.data(), channel: "conversation:c")
    }

    static func ack(_ commandID: String, message: String) throws -> ServerFrame {
        try ServerFrame.ack(commandID, MessageAck(messageId: message, conversationId: "c"))
    }

    static func thinking(_ role: String) -> RoleStatusChange {
        RoleStatusChange(conversationId: "c", role: role, status: "THINKING", previousStatus: "IDLE", reason: "task")
    }

    static func chunk(_ text: String, answering message: String, at position: Int) -> MessageStreamChunk {
        MessageStreamChunk(
            ids: ReplyIDs(
                messageId: ReplyID.answering(message), conversationId: "c", role: "Catherine", runId: message),
            chunk: text, position: position, isComplete: false)
    }

    static func complete(_ run: String, status: String, answer: String, answeredBy: String) -> CollaborationComplete {
        CollaborationComplete(
            conversationId: "c", runId: run, messageId: run, pattern: .direct,
            result: .init(status: status, answer: answer, answeredBy: answeredBy, failedRoles: [], note: ""),
            contributions: [], duration: 1200)
    }

    @Test func followsOnlyItsOwnRunToTheEnd() throws {
        var watcher = RunWatcher(commandID: "send-1")
        let roles = RoleStatusSnapshot(
            conversationId: "c", roles: [.init(role: "Alex", status: "IDLE"), .init(role: "Catherine", status: "IDLE")])
        #expect(watcher.receive(try Self.frame(roles)) == [])
        #expect(watcher.receive(try Self.ack("send-1", message: "m1")) == [.status("sent; waiting for the team…")])
        #expect(watcher.messageID == "m1")
        // Another run's events in the same conversation are not ours: a role step before our run began.
        #expect(watcher.receive(try Self.frame(Self.thinking("Alex"))) == [])
        #expect(
            watcher.receive(
                try Self.frame(
                    CollaborationProgress(
                        conversationId: "c", runId: "m1", progress: 45, currentStage: "ai_processing",
                        completedTasks: [], activeTasks: [], pendingTasks: [])))
                == [.status("45% ai_processing · waiting for the roles")])
        #expect(
            watcher.receive(try Self.frame(Self.thinking("Alex"))) == [.status("45% ai_processing · Alex THINKING")])
        #expect(
            watcher.receive(
                try Self.frame(
                    MessageStreamStart(messageId: "reply-m1", conversationId: "c", role: "Catherine", inReplyTo: "m1")))
                == [.replyStarted(role: "Catherine")])
        #expect(watcher.receive(try Self.frame(Self.chunk("Hello ", answering: "m1", at: 0))) == [.reply("Hello ")])
        #expect(watcher.receive(try Self.frame(Self.chunk("other", answering: "m0", at: 0))) == [])
        // The end adds only what the chunks missed.
        let end = MessageStreamEnd(
            messageId: "reply-m1",
            finalMessage: .init(id: "reply-m1", conversationId: "c", role: "Catherine", content: "Hello world"),
            metadata: .init(chunks: 1, engine: "offline"))
        #expect(watcher.receive(try Self.frame(end)) == [.reply("world")])
        let complete = watcher.receive(
            try Self.frame(Self.complete("m1", status: "completed", answer: "Hello world", answeredBy: "Catherine")))
        #expect(
            complete == [
                .completed(
                    .init(
                        status: "completed", pattern: "direct", answeredBy: "Catherine", answer: "Hello world",
                        note: nil, durationMs: 1200))
            ])
    }

    @Test func aRefusalOrABusyConversationFails() throws {
        var refused = RunWatcher(commandID: "send-1")
        let actions = refused.receive(
            ServerFrame(
                correlationId: "send-1", type: "ERROR", status: .error,
                error: .init(code: "CONTENT_TOO_LONG", message: "too long")))
        #expect(actions == [.failed("the gateway refused the message: CONTENT_TOO_LONG too long")])

        var busy = RunWatcher(commandID: "send-1")
        _ = busy.receive(try Self.ack("send-1", message: "m2"))
        let rejected = MessageRejected(
            conversationId: "c", messageId: "m2", clientMessageId: "send-1", reason: "busy", runId: "m1")
        #expect(
            busy.receive(try Self.frame(rejected))
                == [.failed("the conversation is busy with run m1; the message was not answered")])

        var repeated = RunWatcher(commandID: "send-1")
        _ = repeated.receive(try Self.ack("send-1", message: "m3"))
        let duplicate = MessageRejected(
            conversationId: "c", messageId: "m3", clientMessageId: "send-1", reason: "duplicate", duplicateOf: "m2")
        #expect(
            repeated.receive(try Self.frame(duplicate))
                == [.failed("it repeats message m2 (the same client message id); the message was not answered")])
    }

    @Test func aRunWithoutAStreamedReplyShowsItsResultAnswer() throws {
        var watcher = RunWatcher(commandID: "c")
        _ = watcher.receive(try Self.ack("c", message: "m"))
        let actions = watcher.receive(
            try Self.frame(Self.complete("m", status: "partial", answer: "fallback", answeredBy: "orchestrator")))
        #expect(actions.first == .reply("fallback"))
        guard case .completed(let outcome) = actions.last else { return #expect(Bool(false), "no completion") }
        #expect(outcome.status == "partial" && outcome.answer == "fallback")
    }

    /// The voice bench's device-side view: a burst, steady 60 ms frames (one 7 ms late, so the next comes
    /// 7 ms early), a refill after a late sentence, then an underrun.
    @Test func voicePacingSeparatesJitterRefillsAndUnderruns() {
        let start = ContinuousClock.now
        let at = { (milliseconds: Int) in start + .milliseconds(milliseconds) }
        var arrivals = (0..<5).map { _ in at(0) }  // the burst: the queue plays until 300 ms
        arrivals += [at(60), at(120), at(187), at(240)]  // paced, 4 frames ahead; the third 7 ms late
        arrivals += [at(330), at(331), at(332)]  // a late sentence: one paced frame, then two refills
        arrivals += [at(2000)]  // the queue ran dry long before: an underrun, a new run
        let pacing = VoiceDevicesBench.Pacing(arrivals)
        #expect(pacing.underruns == 1)
        #expect(pacing.refills == 2)
        #expect(
            pacing.deviations == [
                .milliseconds(0), .milliseconds(0), .milliseconds(7), .milliseconds(7), .milliseconds(30),
            ])
    }
}
