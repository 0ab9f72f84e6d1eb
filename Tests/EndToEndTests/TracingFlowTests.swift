import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
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
                // Spans keep arriving while the reply's last events are handled: give them a moment.
                try await Task.sleep(for: .seconds(2))
                let trace = collector.spans.filter { $0.traceID == root.traceID }
                let services = Set(trace.map(\.service))
                #expect(services.isSuperset(of: expected), "services in the trace: \(services.sorted())")

                // Connected: every span but the root has its parent in the trace.
                let ids = Set(trace.map(\.spanID))
                let orphans = trace.filter { $0.spanID != root.spanID && !ids.contains($0.parentSpanID ?? "") }
                #expect(orphans.isEmpty, "spans whose parent is missing: \(orphans.map { "\($0.service) \($0.name)" })")
                #expect(Set(trace.map(\.spanID)).count == trace.count, "a span id used twice")

                // The hops are Kafka sends and their processing, attributed by the messaging conventions.
                let sends = trace.filter { $0.kind == 4 }
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
}
