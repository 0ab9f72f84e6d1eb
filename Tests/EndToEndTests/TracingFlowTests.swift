import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import SwitchboardVoice
import Testing

/// Traces across every hop (docs/configuration.md#traces): with SWITCHBOARD_OTEL_ENDPOINT set, one chat
/// message is one trace, exported over OTLP/HTTP by every service it crosses, each span a child of the
/// one that caused it.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct TracingFlowTests {
    @Test func oneChatMessageIsOneConnectedTraceThroughEveryService() async throws {
        let collector = OTLPReceiver()
        try await collector.withServer { port in
            try await ServiceProcesses.withStack(everyService: ["SWITCHBOARD_OTEL_ENDPOINT": "http://127.0.0.1:\(port)"]
            ) {
                _, url, authority in
                let token = try await authority.mint(user: "traced")
                let conversation = "traced-\(UUID().uuidString.prefix(8))"
                let (frames, _) = try await ChatClient.withConnection(url: url, token: token) {
                    client -> [ServerFrame] in
                    client.send(
                        ClientCommand(
                            id: "traced-send", type: ClientCommandType.sendMessage,
                            data: ["conversationId": .string(conversation), "content": "follow me"]))
                    return await client.frames.collect(idle: .seconds(30)) { $0.type == FrameType.messageStreamEnd }
                }
                #expect(frames?.last?.type == FrameType.messageStreamEnd)

                // The command's span is the root; the services export within a second or two.
                let isRoot: @Sendable (OTLPReceiver.ReceivedSpan) -> Bool = {
                    $0.name == ClientCommandType.sendMessage && $0.attributes["switchboard.command.id"] == "traced-send"
                }
                _ = await eventually(timeout: .seconds(10)) { collector.spans.contains(where: isRoot) }
                let root = try #require(collector.spans.first(where: isRoot), "no span of the command")
                #expect(root.service == "gateway" && root.kind == 2 && root.parentSpanID == nil)
                let expected: Set = ["gateway", "orchestrator", "agent-worker", "notifier"]
                _ = await eventually(timeout: .seconds(10)) {
                    Set(collector.spans.filter { $0.traceID == root.traceID }.map(\.service)).isSuperset(of: expected)
                }
                let trace = await Self.settled(collector, trace: root.traceID)
                let services = Set(trace.map(\.service))
                #expect(services.isSuperset(of: expected), "services in the trace: \(services.sorted())")
                Self.expectConnected(trace, root: root)

                // The notifier's Redis round trips, under its processing of the events they publish
                // (OpenTelemetry's database conventions), and the gateway's writes of those events to the
                // client's socket, under the round trip that published them.
                let publishes = trace.filter { $0.service == "notifier" && $0.attributes["db.system"] == "redis" }
                #expect(!publishes.isEmpty, "no Redis publish span of the notifier")
                for publish in publishes {
                    let parent = trace.first { $0.spanID == publish.parentSpanID }
                    #expect(publish.kind == 3 && publish.name == publish.attributes["db.operation.name"])
                    #expect(
                        parent?.service == "notifier" && parent?.kind == 5
                            && parent?.attributes["messaging.destination.name"] == Topics.clientEvents.name,
                        "\(publish.name) is not a child of the notifier's process span")
                }
                let writes = trace.filter { $0.service == "gateway" && $0.name == "send conversation" }
                #expect(
                    writes.contains { $0.attributes["switchboard.frame.type"] == FrameType.messageStreamEnd },
                    "no socket write of the reply's end: \(writes.map { $0.attributes["switchboard.frame.type"] ?? "?" })"
                )
                for write in writes {
                    #expect(
                        publishes.contains { $0.spanID == write.parentSpanID }, "a socket write not under a publish")
                }

                // The other hops are Kafka sends and their processing, attributed by the messaging conventions.
                let sends = trace.filter { $0.kind == 4 && !writes.contains($0) }
                let processes = trace.filter { $0.kind == 5 }
                #expect(sends.contains { $0.attributes["messaging.destination.name"] == Topics.chatRequests.name })
                #expect(sends.allSatisfy { $0.attributes["messaging.system"] == "kafka" && $0.name.hasPrefix("send ") })
                for process in processes {
                    let parent = trace.first { $0.spanID == process.parentSpanID }
                    #expect(parent?.kind == 4, "\(process.service) \(process.name) is not a child of a send")
                }
                #expect(trace.allSatisfy { $0.start <= $0.end && $0.start >= root.start })
                print(
                    "tracing: one chat message, \(trace.count) spans over \(services.sorted().joined(separator: ", ")), all connected"
                )
            }
        }
    }

    /// swift-otel reads OpenTelemetry's own variables: with the always-off sampler its tracer gives spans
    /// no context to propagate, and the services go on without one (a message's header keeps naming its
    /// cause), export nothing, and answer as without tracing.
    @Test func anAlwaysOffSamplerExportsNothingAndTheChatIsAnswered() async throws {
        let collector = OTLPReceiver()
        try await collector.withServer { port in
            try await ServiceProcesses.withStack(everyService: [
                "SWITCHBOARD_OTEL_ENDPOINT": "http://127.0.0.1:\(port)", "OTEL_TRACES_SAMPLER": "always_off",
            ]) { _, url, authority in
                let token = try await authority.mint(user: "untraced")
                let (frames, _) = try await ChatClient.withConnection(url: url, token: token) {
                    client -> [ServerFrame] in
                    client.send(
                        ClientCommand(
                            id: "untraced-send", type: ClientCommandType.sendMessage,
                            data: [
                                "conversationId": .string("untraced-\(UUID().uuidString.prefix(8))"), "content": "hi",
                            ]))
                    return await client.frames.collect(idle: .seconds(30)) { $0.type == FrameType.messageStreamEnd }
                }
                #expect(frames?.last?.type == FrameType.messageStreamEnd)
                // The services export every second: two seconds after the answer, anything made would be in.
                try await Task.sleep(for: .seconds(2))
                #expect(
                    collector.spans.isEmpty,
                    "\(collector.spans.count) spans exported: \(collector.spans.prefix(3).map(\.name))")
            }
        }
    }

    /// Every span of the trace, once the services have exported what its last events left.
    static func settled(_ collector: OTLPReceiver, trace: String) async -> [OTLPReceiver.ReceivedSpan] {
        // Spans keep arriving while the last events are handled: give them a moment.
        try? await Task.sleep(for: .seconds(2))
        return collector.spans.filter { $0.traceID == trace }
    }

    /// Connected: every span but the root has its parent in the trace, and no span id is used twice.
    static func expectConnected(_ trace: [OTLPReceiver.ReceivedSpan], root: OTLPReceiver.ReceivedSpan) {
        let ids = Set(trace.map(\.spanID))
        let orphans = trace.filter { $0.spanID != root.spanID && !ids.contains($0.parentSpanID ?? "") }
        #expect(orphans.isEmpty, "spans whose parent is missing: \(orphans.map { "\($0.service) \($0.name)" })")
        #expect(ids.count == trace.count, "a span id used twice")
    }

    /// A workflow run is one trace from the gateway's execute_workflow on: one `node <type>` span per node
    /// executed, each a child of the runner's `process` span of the run's request, an llm node's agent
    /// task under its node, and a failed node's span with an error status.
    @Test func aWorkflowRunIsOneConnectedTraceWithASpanPerNodeExecuted() async throws {
        typealias Flow = WorkflowFlowTests
        let collector = OTLPReceiver()
        try await collector.withServer { port in
            try await ServiceProcesses.withStack(everyService: ["SWITCHBOARD_OTEL_ENDPOINT": "http://127.0.0.1:\(port)"]
            ) {
                _, url, authority in
                let token = try await authority.mint(user: "traced-runs")
                let failing = WorkflowLimitsTests.httpNode("http://127.0.0.1:9/refused")
                let (result, _) = try await WorkflowClient.withConnection(
                    url: Flow.wsURL(url, session: "traced-\(UUID().uuidString.prefix(8))"), token: token
                ) { client -> [(run: String, outcome: JSONValue?)] in
                    _ = await client.frames.first("connection_established")
                    var runs: [(run: String, outcome: JSONValue?)] = []
                    for workflow in [Flow.tenNodes, failing] {
                        let runID = try await Flow.execute(client, workflow)
                        let outcome = await client.frames.first(within: .seconds(30)) {
                            Flow.isOutcome($0) && $0["run_id"]?.stringValue == runID
                        }
                        runs.append((runID, outcome))
                    }
                    return runs
                }
                let runs = try #require(result)
                try #require(runs.count == 2)
                #expect(runs[0].outcome?["type"]?.stringValue == "workflow_completed", "\(String(describing: runs[0]))")
                #expect(runs[1].outcome?["type"]?.stringValue == "workflow_failed", "\(String(describing: runs[1]))")

                for (run, executed) in [
                    (runs[0].run, ["start", "greet", "check", "praise", "side", "side2", "join", "summary", "end"]),
                    (runs[1].run, ["start", "fetch"]),
                ] {
                    let isNode: @Sendable (OTLPReceiver.ReceivedSpan) -> Bool = {
                        $0.service == "workflow-runner" && $0.attributes["switchboard.workflow.run_id"] == run
                    }
                    _ = await eventually(timeout: .seconds(10)) {
                        Set(collector.spans.filter(isNode).compactMap { $0.attributes["switchboard.workflow.node.id"] })
                            .isSuperset(of: executed)
                    }
                    let traceID = try #require(collector.spans.first(where: isNode)?.traceID, "no node span of \(run)")
                    let trace = await Self.settled(collector, trace: traceID)
                    let root = try #require(trace.first { $0.parentSpanID == nil }, "the trace of \(run) has no root")
                    #expect(root.service == "gateway" && root.kind == 2 && root.name == "execute_workflow")
                    Self.expectConnected(trace, root: root)

                    // One span per node executed, each under the runner's processing of the run's request.
                    let nodes = trace.filter(isNode)
                    #expect(
                        nodes.compactMap { $0.attributes["switchboard.workflow.node.id"] }.sorted()
                            == executed.sorted(),
                        "node spans of \(run): \(nodes.map(\.name))")
                    for node in nodes {
                        let type = node.attributes["switchboard.workflow.node.type"] ?? "?"
                        #expect(node.name == "node \(type)")
                        let parent = trace.first { $0.spanID == node.parentSpanID }
                        #expect(
                            parent?.service == "workflow-runner" && parent?.kind == 5
                                && parent?.attributes["messaging.destination.name"] == Topics.workflowCommands.name,
                            "\(node.name) is not a child of the run's process span")
                        let failed = node.attributes["switchboard.workflow.node.id"] == "fetch"
                        #expect(
                            node.attributes["switchboard.workflow.node.outcome"] == (failed ? "failed" : "completed"))
                        #expect(
                            node.status == (failed ? 2 : nil), "\(node.name): status \(String(describing: node.status))"
                        )
                    }
                    print("tracing: workflow run \(run), \(trace.count) spans, \(nodes.count) nodes, all connected")
                }

                // The llm node's agent task continues the run's trace, under the node's span.
                let praise = try #require(
                    collector.spans.first {
                        $0.attributes["switchboard.workflow.run_id"] == runs[0].run
                            && $0.attributes["switchboard.workflow.node.id"] == "praise"
                    })
                let trace = collector.spans.filter { $0.traceID == praise.traceID }
                let task = trace.first {
                    $0.parentSpanID == praise.spanID
                        && $0.attributes["messaging.destination.name"] == Topics.agentTasks.name
                }
                #expect(task != nil, "no agent task sent from the llm node's span")
                #expect(trace.contains { $0.service == "agent-worker" && $0.name.hasPrefix("chat ") })
            }
        }
    }

    /// A device's turn is one trace from the voice-worker's turn on: its asr, llm and tts spans, and the
    /// question to the conversation under the llm span, continued by the services that answer it.
    @Test func aDeviceTurnIsOneConnectedTraceWithItsAsrLlmAndTtsSpans() async throws {
        let collector = OTLPReceiver()
        try await collector.withServer { port in
            try await VoiceFlowTests.withVoiceStack(
                everyService: ["SWITCHBOARD_OTEL_ENDPOINT": "http://127.0.0.1:\(port)"]
            ) { stack in
                let deviceID = VoiceFlowTests.deviceID()
                let clientID = UUID().uuidString
                let owner = try await stack.authority.mint(user: "traced-speaker-\(UUID().uuidString.prefix(8))")
                _ = try await DeviceActivationFlowTests.bind(
                    stack.httpBase, deviceID: deviceID, clientID: clientID, user: owner)
                let (url, otaToken, _) = try await VoiceFlowTests.ota(
                    stack.httpBase, deviceID: deviceID, clientID: clientID)
                let token = try #require(otaToken)
                let speech = try await DeviceSimulator.speech("good morning")
                let (result, _) = try await DeviceSimulator.connect(
                    url: url, token: token, deviceID: deviceID, clientID: clientID
                ) { device -> (String, [DeviceSimulator.Received]) in
                    let session = try await VoiceFlowTests.hello(device)
                    return (session, try await VoiceFlowTests.sayAndHear(device, session: session, speech))
                }
                let (session, received) = try #require(result)
                #expect(received.contains { $0.audio != nil }, "no answer was spoken")

                let isTurn: @Sendable (OTLPReceiver.ReceivedSpan) -> Bool = {
                    $0.service == "voice-worker" && $0.name == "voice turn"
                        && $0.attributes["switchboard.voice.session_id"] == session
                }
                _ = await eventually(timeout: .seconds(10)) { collector.spans.contains(where: isTurn) }
                let root = try #require(collector.spans.first(where: isTurn), "no span of the turn")
                #expect(root.kind == 2 && root.parentSpanID == nil)
                let answering: Set = ["voice-worker", "orchestrator", "agent-worker", "notifier"]
                _ = await eventually(timeout: .seconds(10)) {
                    Set(collector.spans.filter { $0.traceID == root.traceID }.map(\.service)).isSuperset(of: answering)
                }
                let trace = await Self.settled(collector, trace: root.traceID)
                #expect(Set(trace.map(\.service)).isSuperset(of: answering), "\(Set(trace.map(\.service)))")
                Self.expectConnected(trace, root: root)

                // Heard, asked, answered and spoken: one asr span, then the llm span, the tts spans inside it.
                let stages = trace.filter { $0.service == "voice-worker" && $0.parentSpanID == root.spanID }
                let asr = try #require(stages.first { $0.name == "asr" }, "stages: \(stages.map(\.name))")
                let llm = try #require(stages.first { $0.name == "llm" }, "stages: \(stages.map(\.name))")
                let tts = stages.filter { $0.name == "tts" }
                #expect(stages.filter { $0.name == "asr" || $0.name == "llm" }.count == 2)
                #expect(!tts.isEmpty && tts.allSatisfy { $0.start >= llm.start && $0.status == nil })
                #expect(asr.end <= llm.start && asr.attributes["switchboard.voice.engine"] != nil)
                #expect(llm.status == nil && llm.attributes["switchboard.voice.answer"] == "answered")
                // The question to the conversation is sent from the llm span.
                #expect(
                    trace.contains {
                        $0.parentSpanID == llm.spanID
                            && $0.attributes["messaging.destination.name"] == Topics.chatRequests.name
                    })
                print("tracing: one device turn, \(trace.count) spans, \(tts.count) tts, all connected")
            }
        }
    }
}
