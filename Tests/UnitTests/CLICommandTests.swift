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
    static func frame(_ type: String, correlationId: String? = nil, _ data: JSONValue = [:]) -> ServerFrame {
        ServerFrame(correlationId: correlationId, type: type, data: data)
    }

    @Test func followsOnlyItsOwnRunToTheEnd() {
        var watcher = RunWatcher(commandID: "send-1")
        #expect(
            watcher.receive(
                Self.frame(
                    FrameType.roleStatusSnapshot,
                    ["roles": [["role": "Alex", "status": "IDLE"], ["role": "Catherine", "status": "IDLE"]]])) == [])
        #expect(
            watcher.receive(Self.frame("ACK", correlationId: "send-1", ["messageId": "m1"])) == [
                .status("sent; waiting for the team…")
            ])
        #expect(watcher.messageID == "m1")
        // Another run's events in the same conversation are not ours.
        #expect(
            watcher.receive(
                Self.frame(FrameType.roleStatusChange, ["runId": "m0", "role": "Alex", "status": "THINKING"])) == [])
        #expect(
            watcher.receive(
                Self.frame(
                    FrameType.collaborationProgress, ["runId": "m1", "progress": 45, "currentStage": "ai_processing"]))
                == [.status("45% ai_processing · waiting for the roles")])
        #expect(
            watcher.receive(
                Self.frame(FrameType.roleStatusChange, ["runId": "m1", "role": "Alex", "status": "THINKING"]))
                == [.status("45% ai_processing · Alex THINKING")])
        #expect(
            watcher.receive(
                Self.frame(
                    FrameType.messageStreamStart, ["messageId": "reply-m1", "inReplyTo": "m1", "role": "Catherine"]))
                == [.replyStarted(role: "Catherine")])
        #expect(
            watcher.receive(Self.frame(FrameType.messageStreamChunk, ["messageId": "reply-m1", "chunk": "Hello "])) == [
                .reply("Hello ")
            ])
        #expect(
            watcher.receive(Self.frame(FrameType.messageStreamChunk, ["messageId": "reply-m0", "chunk": "other"])) == []
        )
        // The end adds only what the chunks missed.
        #expect(
            watcher.receive(
                Self.frame(
                    FrameType.messageStreamEnd, ["messageId": "reply-m1", "finalMessage": ["content": "Hello world"]]))
                == [.reply("world")])
        let complete = watcher.receive(
            Self.frame(
                FrameType.collaborationComplete,
                [
                    "runId": "m1", "pattern": "direct", "duration": 1200,
                    "result": ["status": "completed", "answer": "Hello world", "answeredBy": "Catherine", "note": ""],
                ]))
        #expect(
            complete == [
                .completed(
                    .init(
                        status: "completed", pattern: "direct", answeredBy: "Catherine", answer: "Hello world",
                        note: nil, durationMs: 1200))
            ])
    }

    @Test func aRefusalOrABusyConversationFails() {
        var refused = RunWatcher(commandID: "send-1")
        let actions = refused.receive(
            ServerFrame(
                correlationId: "send-1", type: "ERROR", status: .error,
                error: .init(code: "CONTENT_TOO_LONG", message: "too long")))
        #expect(actions == [.failed("the gateway refused the message: CONTENT_TOO_LONG too long")])

        var busy = RunWatcher(commandID: "send-1")
        _ = busy.receive(Self.frame("ACK", correlationId: "send-1", ["messageId": "m2"]))
        #expect(
            busy.receive(Self.frame(FrameType.messageRejected, ["messageId": "m2", "runId": "m1", "reason": "busy"]))
                == [.failed("the conversation is busy with run m1; the message was not answered")])
    }

    @Test func aRunWithoutAStreamedReplyShowsItsResultAnswer() {
        var watcher = RunWatcher(commandID: "c")
        _ = watcher.receive(Self.frame("ACK", correlationId: "c", ["messageId": "m"]))
        let actions = watcher.receive(
            Self.frame(
                FrameType.collaborationComplete, ["runId": "m", "result": ["status": "partial", "answer": "fallback"]]))
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
