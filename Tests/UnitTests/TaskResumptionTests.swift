import AsyncHTTPClient
import Foundation
import SwitchboardContracts
import SwitchboardRuntime
import Testing

@testable import AgentWorker

/// What makes a redelivered agent task invisible to the client (issue 14 item 9): its events keep their
/// ids, and its answer goes on after what an earlier attempt streamed.
struct TaskResumptionTests {
    let conversation = Channel.conversation("c1")

    @Test func eventIDsDependOnlyOnTheTaskAndThePlaceOfTheEvent() {
        let ids = TaskEventIDs(taskID: "m1-alex")
        // Two attempts (two processes) name every event alike.
        #expect(ids.chunk(3, channel: conversation) == TaskEventIDs(taskID: "m1-alex").chunk(3, channel: conversation))
        #expect(
            ids.once(FrameType.messageStreamEnd, channel: conversation)
                == TaskEventIDs(taskID: "m1-alex").once(FrameType.messageStreamEnd, channel: conversation))
        #expect(ids.result == TaskEventIDs(taskID: "m1-alex").result)
        // Every other event, task or channel has its own id.
        let all: [UUID] =
            (0..<50).map { ids.chunk($0, channel: conversation) } + [
                ids.chunk(0, channel: .roles("c1")),
                TaskEventIDs(taskID: "m1-kulu").chunk(0, channel: conversation),
                ids.once(FrameType.agentStart, channel: conversation),
                ids.once(FrameType.messageStreamStart, channel: conversation),
                ids.once(FrameType.messageStreamEnd, channel: conversation),
                ids.roleStep(FrameType.roleStatusChange, to: .responding, channel: conversation),
                ids.roleStep(FrameType.roleStatusChange, to: .responding, channel: .roles("c1")),
                ids.roleStep(FrameType.roleStatusChange, to: .error, channel: conversation),
                ids.roleStep(FrameType.roleThinkingEnd, to: .responding, channel: conversation),
                ids.result,
            ]
        #expect(Set(all).count == all.count)
    }

    @Test func eventIDsAreVersion5UUIDs() {
        let id = TaskEventIDs(taskID: "t").chunk(0, channel: conversation)
        #expect(id.uuidString.lowercased().dropFirst(14).first == "5")
        #expect("89ab".contains(id.uuidString.lowercased().dropFirst(19).first!))
        // The orchestrator's ids come from the same function (one algorithm for every derived id).
        #expect(
            NameBasedUUID.make("x") == NameBasedUUID.make("x") && NameBasedUUID.make("x") != NameBasedUUID.make("y"))
    }

    @Test func progressGivesTheAnswerSoFarAndEachChunksPosition() {
        let progress = TaskProgress(chunks: ["Alex here. ", "你好 ", "👨‍👩‍👧 ok"])
        #expect(progress.text == "Alex here. 你好 👨‍👩‍👧 ok")
        #expect(
            progress.positions.each == [
                0, ChatCentreDialect.length("Alex here. "), ChatCentreDialect.length("Alex here. 你好 "),
            ])
        #expect(progress.positions.next == ChatCentreDialect.length(progress.text))
        #expect(
            TaskProgress().positions.each.isEmpty && TaskProgress().positions.next == 0 && TaskProgress().text.isEmpty)
    }

    /// The offline engine resumed after any prefix of its answer streams exactly the rest of it.
    @Test func theOfflineEngineResumesWithTheRestOfItsAnswer() async throws {
        let provider = OfflineProvider(
            engine: OfflineEngine(settings: .init(tokensPerSecond: 0, firstTokenDelay: .zero)))
        var request = ProviderRequest(role: "Alex", responsibility: "planner", userMessage: "plan a team offsite 你好 👨‍👩‍👧")
        let full = OfflineEngine.compose(request)
        for cut in [0, 1, 17, full.count / 2, full.count - 1, full.count] {
            request.answerSoFar = String(full.prefix(cut))
            var rest = ""
            try await provider.stream(request) { rest += $0 }
            #expect(request.answerSoFar + rest == full, "cut at \(cut)")
        }
    }

    /// A model is shown the answer so far and asked to go on, after the message it answers.
    @Test func anOpenAIRequestResumingAnAnswerAsksForTheRest() throws {
        let provider = OpenAIProvider(
            spec: ProviderSpec(kind: "openai", baseURL: "http://127.0.0.1:1/v1", model: "m"), apiKey: nil,
            client: .shared)
        var request = ProviderRequest(role: "Kulu", systemPrompt: "You are Kulu.", userMessage: "hello")
        func messages() throws -> [[String: String]] {
            let body = try JSONSerialization.jsonObject(with: try provider.body(for: request)) as! [String: Any]
            return body["messages"] as! [[String: String]]
        }
        #expect(try messages().map { $0["role"]! } == ["system", "user"])
        request.answerSoFar = "Hello, I would start"
        let resumed = try messages()
        #expect(resumed.map { $0["role"]! } == ["system", "user", "assistant", "user"])
        #expect(resumed[2]["content"] == "Hello, I would start")
        #expect(resumed[3]["content"] == OpenAIProvider.continuation)
    }
}
