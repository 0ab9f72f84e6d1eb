import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The compatible front doors (OpenAI Chat Completions, BluePlan's novachat / loomichat) through the
/// real services, read by plain HTTP clients.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct FrontDoorTests {
    static func post(
        port: Int, path: String, token: String?, body: String, headers: [String: String] = [:]
    ) async throws -> (status: Int, json: JSONValue?, conversation: String?) {
        let answer = try await HTTPRequests.post(
            "http://127.0.0.1:\(port)\(path)", token: token, body: body, headers: headers)
        return (
            answer.status, try? JSONDecoder().decode(JSONValue.self, from: answer.body),
            answer.headers["x-switchboard-conversation-id"]
        )
    }

    static func get(port: Int, path: String, token: String) async throws -> (status: Int, json: JSONValue?) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, try? JSONDecoder().decode(JSONValue.self, from: data))
    }

    static func decode(_ text: String) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    /// Expects OpenAI's error shape.
    static func expectOpenAIError(_ json: JSONValue?, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(
            json?["error"]?["message"]?.stringValue?.isEmpty == false, "\(String(describing: json))",
            sourceLocation: sourceLocation)
        #expect(json?["error"]?["type"]?.stringValue != nil, sourceLocation: sourceLocation)
    }

    @Test func openAIChatCompletionsStreamAndNot() async throws {
        try await ServiceProcesses.withStack { _, url, authority in
            let port = URL(string: url)!.port!
            let token = try await authority.mint(user: "sdk-\(UUID().uuidString.prefix(6))")

            // The team and its patterns and roles, as models (the orchestrator announces them at start).
            var models: JSONValue?
            #expect(
                await eventually(timeout: .seconds(20)) {
                    models = try? await Self.get(port: port, path: "/v1/models", token: token).json
                    return models?["data"]?.arrayValue?.isEmpty == false
                })
            let ids = models?["data"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
            #expect(models?["object"] == "list")
            #expect(
                [
                    "chat-centre", "chat-centre/parallel", "chat-centre/direct", "chat-centre/Mike",
                    "chat-centre/Catherine",
                ].allSatisfy(ids.contains))

            // Non-streaming: the collaboration's final answer as one chat.completion.
            let plain = try await Self.post(
                port: port, path: "/v1/chat/completions", token: token,
                body:
                    #"{"model":"chat-centre/direct","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there"}]}"#
            )
            #expect(plain.status == 200, "\(String(describing: plain.json))")
            #expect(plain.json?["object"] == "chat.completion")
            #expect(plain.json?["model"] == "chat-centre/direct")
            #expect(plain.json?["id"]?.stringValue?.hasPrefix("chatcmpl-") == true)
            let message = plain.json?["choices"]?[0]
            #expect(plain.json?["choices"]?.arrayValue?.count == 1)
            #expect(message?["message"]?["role"] == "assistant")
            #expect(message?["finish_reason"] == "stop")
            let answer = try #require(message?["message"]?["content"]?.stringValue)
            #expect(answer.contains("offline engine"), "\(answer)")
            let usage = plain.json?["usage"]
            #expect(usage?["prompt_tokens"] == 2)
            #expect((usage?["completion_tokens"]?.intValue ?? 0) > 0)
            #expect(
                usage?["total_tokens"]?.intValue == (usage?["prompt_tokens"]?.intValue ?? 0)
                    + (usage?["completion_tokens"]?.intValue ?? 0))
            let conversation = try #require(plain.conversation)
            #expect(conversation.hasPrefix("chat-"))

            // Streaming with usage: role chunk, content chunks, finish chunk, usage chunk, [DONE].
            let stream = try await SSEClient.connect(
                port: port, path: "/v1/chat/completions", headers: ["Authorization": "Bearer \(token)"], method: "POST",
                body:
                    #"{"model":"chat-centre/Mike","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":[{"type":"text","text":"what would you build first"}]}]}"#
            )
            #expect(await stream.waitFor { $0.last?.data == "[DONE]" })
            await stream.close()
            #expect(stream.head?.hasPrefix("HTTP/1.1 200") == true)
            #expect(stream.head?.lowercased().contains("text/event-stream") == true)
            let events = stream.events
            #expect(events.allSatisfy { $0.event == nil && $0.id == nil })
            #expect(events.last?.data == "[DONE]")
            let chunks = events.dropLast().compactMap { Self.decode($0.data) }
            #expect(chunks.count == events.count - 1)
            #expect(chunks.allSatisfy { $0["object"] == "chat.completion.chunk" && $0["model"] == "chat-centre/Mike" })
            #expect(Set(chunks.compactMap { $0["id"]?.stringValue }).count == 1)
            #expect(chunks.first?["choices"]?[0]?["delta"]?["role"] == "assistant")
            let usageChunk = try #require(chunks.last)
            #expect(usageChunk["choices"]?.arrayValue?.isEmpty == true)
            #expect((usageChunk["usage"]?["completion_tokens"]?.intValue ?? 0) > 0)
            let finish = chunks[chunks.count - 2]
            #expect(finish["choices"]?[0]?["finish_reason"] == "stop")
            #expect(chunks.dropLast().allSatisfy { $0["usage"] == .null })
            let content = chunks.compactMap { $0["choices"]?[0]?["delta"]?["content"]?.stringValue }.joined()
            // Mike leads: the reply is his, and names him.
            #expect(content.contains("Mike"), "\(content)")
            #expect(chunks.filter { $0["choices"]?[0]?["delta"]?["content"]?.stringValue?.isEmpty == false }.count >= 2)

            // Errors in OpenAI's shape.
            let badModel = try await Self.post(
                port: port, path: "/v1/chat/completions", token: token,
                body: #"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#)
            #expect(badModel.status == 404)
            Self.expectOpenAIError(badModel.json)
            #expect(badModel.json?["error"]?["code"] == "model_not_found")
            #expect(badModel.json?["error"]?["param"] == "model")
            let badBody = try await Self.post(
                port: port, path: "/v1/chat/completions", token: token, body: #"{"model": 3}"#)
            #expect(badBody.status == 400)
            Self.expectOpenAIError(badBody.json)
            #expect(badBody.json?["error"]?["type"] == "invalid_request_error")
            let noUser = try await Self.post(
                port: port, path: "/v1/chat/completions", token: token,
                body: #"{"model":"chat-centre","messages":[{"role":"system","content":"only a system prompt"}]}"#)
            #expect(noUser.status == 400)
            #expect(noUser.json?["error"]?["param"] == "messages")
            let anonymous = try await Self.post(
                port: port, path: "/v1/chat/completions", token: nil, body: #"{"model":"chat-centre","messages":[]}"#)
            #expect(anonymous.status == 401)
            Self.expectOpenAIError(anonymous.json)
            #expect(anonymous.json?["error"]?["code"] == "invalid_api_key")
            // Another user's conversation is refused.
            let stranger = try await authority.mint(user: "stranger")
            let foreign = try await Self.post(
                port: port, path: "/v1/chat/completions", token: stranger,
                body: #"{"model":"chat-centre","messages":[{"role":"user","content":"hi"}]}"#,
                headers: ["X-Switchboard-Conversation-Id": conversation])
            #expect(foreign.status == 403)
            Self.expectOpenAIError(foreign.json)
        }
    }

    /// Parses a BluePlan stream's events: each `data:` is `{event_type, agent_source, timestamp, payload}`.
    static func bluePlanEvents(_ events: [SSEClient.Event]) -> [(id: String?, event: JSONValue)] {
        events.compactMap { event in decode(event.data).map { (event.id, $0) } }
    }

    @Test func bluePlanNovaAndLoomiStreamAndResume() async throws {
        try await ServiceProcesses.withStack(tokensPerSecond: 60) { _, url, authority in
            let port = URL(string: url)!.port!
            let token = try await authority.mint(user: "blueplan-\(UUID().uuidString.prefix(6))")
            let auth = ["Authorization": "Bearer \(token)"]

            // Nova3: the supervisor plans, the four specialists run in parallel, David and Catherine merge.
            let nova = try await SSEClient.connect(
                port: port, path: "/novachat", headers: auth, method: "POST",
                body: #"{"message":"compare three ways to launch a newsletter"}"#)
            #expect(
                await nova.waitFor(within: .seconds(60)) { events in
                    events.contains {
                        $0.data.contains("\"nova3_supervisor\"") && $0.data.contains("\"agent_complete\"")
                    }
                })
            #expect(await eventually(timeout: .seconds(5)) { nova.isClosed }, "the stream ends after the run")
            let head = try #require(nova.head)
            #expect(head.hasPrefix("HTTP/1.1 200") && head.lowercased().contains("text/event-stream"))
            let conversation = try #require(
                head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-switchboard-conversation-id:") }
                    .map { String($0.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) })
            let events = Self.bluePlanEvents(nova.events)
            #expect(events.count == nova.events.count)
            #expect(
                events.allSatisfy {
                    Set($0.event.objectValue?.keys.map { $0 } ?? []) == [
                        "event_type", "agent_source", "timestamp", "payload",
                    ]
                })
            #expect(events.allSatisfy { $0.id.flatMap(StreamPosition.init(lastEventID:)) != nil })
            let types = events.map { $0.event["event_type"]?.stringValue ?? "" }
            #expect(Set(types).isSubset(of: ["agent_start", "llm_chunk", "agent_complete", "error"]))
            #expect(events.first?.event["agent_source"] == "nova3_supervisor" && types.first == "agent_start")
            #expect(events.first?.event["payload"]?["pattern"] == "parallel")
            #expect(events.last?.event["agent_source"] == "nova3_supervisor" && types.last == "agent_complete")
            #expect(events.last?.event["payload"]?["status"] == "completed")
            let starts = events.filter { $0.event["event_type"] == "agent_start" }.compactMap {
                $0.event["agent_source"]?.stringValue
            }
            #expect(
                starts == ["nova3_supervisor", "Alex", "Kulu", "Mike", "Emma", "David", "Catherine"]
                    || Set(starts) == ["nova3_supervisor", "Alex", "Kulu", "Mike", "Emma", "David", "Catherine"])
            // The specialists overlap: all four start before any of them completes.
            let firstComplete = types.firstIndex(of: "agent_complete") ?? 0
            #expect(events.prefix(firstComplete).filter { $0.event["event_type"] == "agent_start" }.count == 5)
            let catherine = events.filter {
                $0.event["event_type"] == "llm_chunk" && $0.event["agent_source"] == "Catherine"
            }
            .compactMap { $0.event["payload"]?["content"]?.stringValue }.joined()
            #expect(events.last?.event["payload"]?["summary"]?.stringValue == catherine)

            // Resume from the middle: the rest, exactly, and the same end.
            let middle = events.count / 2
            let resumed = try await SSEClient.connect(
                port: port, path: "/novachat", headers: auth.merging(["Last-Event-ID": events[middle - 1].id!]) { $1 },
                method: "POST", body: #"{"conversation_id":"\#(conversation)"}"#)
            #expect(await eventually(timeout: .seconds(20)) { resumed.isClosed })
            let rest = Self.bluePlanEvents(resumed.events)
            #expect(rest.map(\.id) == events.dropFirst(middle).map(\.id))
            #expect(rest.map(\.event) == events.dropFirst(middle).map(\.event))

            // A position that was never there: an error event, nothing replayed.
            let lost = try await SSEClient.connect(
                port: port, path: "/novachat", headers: auth.merging(["Last-Event-ID": "nope:99999"]) { $1 },
                method: "POST", body: #"{"conversation_id":"\#(conversation)"}"#)
            #expect(await eventually(timeout: .seconds(10)) { lost.isClosed })
            #expect(Self.bluePlanEvents(lost.events).map { $0.event["event_type"] } == ["error"])

            // Loomi: one concierge that delegates, one specialist at a time.
            let loomi = try await SSEClient.connect(
                port: port, path: "/loomichat", headers: auth, method: "POST",
                body: #"{"message":"help me think through the design of a small garden for a rainy city balcony"}"#)
            #expect(
                await loomi.waitFor(within: .seconds(60)) { events in
                    events.contains {
                        $0.data.contains("\"loomi_concierge\"") && $0.data.contains("\"agent_complete\"")
                    }
                })
            let loomiEvents = Self.bluePlanEvents(loomi.events)
            await loomi.close()
            #expect(loomiEvents.first?.event["agent_source"] == "loomi_concierge")
            #expect(loomiEvents.first?.event["payload"]?["pattern"] == "dynamic")
            let delegated = loomiEvents.filter { $0.event["event_type"] == "agent_start" }.compactMap {
                $0.event["agent_source"]?.stringValue
            }
            #expect(delegated.first == "loomi_concierge" && delegated.last == "Catherine" && delegated.count >= 5)
            // One at a time: every role completes before the next starts.
            let sequence = loomiEvents.filter {
                ["agent_start", "agent_complete"].contains($0.event["event_type"]?.stringValue ?? "")
            }
            .dropFirst().dropLast().map { $0.event["event_type"]?.stringValue ?? "" }
            #expect(
                sequence
                    == Array(repeating: ["agent_start", "agent_complete"], count: sequence.count / 2).flatMap { $0 })

            // Bad bodies.
            let empty = try await Self.post(port: port, path: "/novachat", token: token, body: #"{"message":"  "}"#)
            #expect(empty.status == 400)
            let notJSON = try await Self.post(port: port, path: "/loomichat", token: token, body: "hello")
            #expect(notJSON.status == 400)
            let anonymous = try await Self.post(port: port, path: "/novachat", token: nil, body: #"{"message":"hi"}"#)
            #expect(anonymous.status == 401)
        }
    }

    /// REQUEST_ROLE_FOCUS and the role-state snapshot a joining client is shown.
    @Test func roleFocusLeadsTheNextRunAndJoinersSeeEveryRole() async throws {
        try await ServiceProcesses.withStack(tokensPerSecond: 30) { _, url, authority in
            let port = URL(string: url)!.port!
            let user = "focus-\(UUID().uuidString.prefix(6))"
            let token = try await authority.mint(user: user)
            let conversation = "focus-\(UUID().uuidString.prefix(8))"
            let roles = ["Alex", "Kulu", "Mike", "Emma", "David", "Catherine"]

            let (outcome, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                // The orchestrator announces its team when it starts; the gateway checks roles against it.
                var answer: ServerFrame?
                for attempt in 0..<50 {
                    client.send(
                        ClientCommand(
                            id: "f\(attempt)", type: ClientCommandType.requestRoleFocus,
                            data: ["conversationId": .string(conversation), "role": "mike"]))
                    answer = await client.frames.first(within: .seconds(10)) { $0.correlationId == "f\(attempt)" }?
                        .frame
                    if answer?.type == "ACK" { break }
                    try? await Task.sleep(for: .milliseconds(200))
                }
                client.send(
                    ClientCommand(
                        id: "bad", type: ClientCommandType.requestRoleFocus,
                        data: ["conversationId": .string(conversation), "role": "Zed"]))
                let bad = await client.frames.first(within: .seconds(10)) { $0.correlationId == "bad" }?.frame
                client.send(
                    ClientCommand(
                        id: "m1", type: ClientCommandType.sendMessage,
                        data: [
                            "conversationId": .string(conversation),
                            "content": "compare the options for a team offsite",
                            "pattern": "parallel",
                        ]))
                var frames = [answer, bad].compactMap { $0 }
                while let next = await client.frames.next(within: .seconds(30)) {
                    frames.append(next.frame)
                    if next.frame.type == FrameType.collaborationComplete { break }
                }
                return frames
            }
            let frames = try #require(outcome)
            #expect(
                frames[0].type == "ACK" && frames[0].data["role"] == "Mike" && frames[0].data["status"] == "focused")
            #expect(
                frames[1].type == "ERROR" && frames[1].error?.code == "INVALID_ARGUMENT"
                    && frames[1].correlationId == "bad")
            let start = try #require(frames.first { $0.type == FrameType.collaborationStart })
            #expect(start.data["lead"] == "Mike")
            #expect(start.data["roles"] == ["Alex", "Kulu", "Emma", "David", "Mike"])
            #expect(frames.first { $0.type == FrameType.messageStreamStart }?.data["role"] == "Mike")
            #expect(frames.last?.data["result"]?["answeredBy"] == "Mike")

            // The role-activity SSE stream opens with the snapshot (no id): every role IDLE between runs.
            let activityPath = "/api/v1/conversations/\(conversation)/roles/activity"
            let activity = try await SSEClient.connect(
                port: port, path: activityPath, headers: ["Authorization": "Bearer \(token)"])
            #expect(await activity.waitFor(within: .seconds(10)) { !$0.isEmpty })

            // The focus was for one run: the next is led by the team's own final role. A second client joins
            // mid-run: its ACK, then every role's state at once, then the live events.
            let (joined, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [ServerFrame] in
                client.send(
                    ClientCommand(
                        id: "m2", type: ClientCommandType.sendMessage,
                        data: [
                            "conversationId": .string(conversation), "content": "compare two venues for it",
                            "pattern": "parallel",
                        ]))
                _ = await client.frames.first(within: .seconds(30)) { $0.type == FrameType.agentChunk }
                let (second, _) = try await ChatClient.withConnection(url: url, token: token) {
                    other -> [ServerFrame] in
                    other.send(
                        ClientCommand(
                            id: "join", type: ClientCommandType.subscribeConversation,
                            data: ["conversationId": .string(conversation)]))
                    var frames: [ServerFrame] = []
                    while let next = await other.frames.next(within: .seconds(30)) {
                        guard next.frame.channel == "conversation:\(conversation)" || next.frame.correlationId == "join"
                        else { continue }
                        // Its own PRESENCE_JOIN is live-only and races the run's events: not what is checked here.
                        if next.frame.type == FrameType.presenceJoin { continue }
                        frames.append(next.frame)
                        if frames.count >= 3 { break }
                    }
                    return frames
                }
                var frames = second ?? []
                while let next = await client.frames.next(within: .seconds(30)) {
                    if next.frame.type == FrameType.collaborationComplete {
                        frames.append(next.frame)
                        break
                    }
                }
                return frames
            }
            let seen = try #require(joined)
            #expect(seen.count == 4)
            #expect(seen[0].type == "ACK" && seen[0].correlationId == "join")
            let snapshot = seen[1]
            #expect(snapshot.type == FrameType.roleStatusSnapshot)
            #expect(snapshot.offset == nil && snapshot.epoch == nil && snapshot.correlationId == nil)
            let states = snapshot.data["roles"]?.arrayValue ?? []
            #expect(states.compactMap { $0["role"]?.stringValue } == roles)
            #expect(
                states.contains {
                    ["ANALYZING", "THINKING", "RESPONDING", "COLLABORATING"].contains($0["status"]?.stringValue ?? "")
                },
                "mid-run, some role is at work: \(states)")
            #expect(seen[2].offset != nil, "live events follow the snapshot")
            #expect(seen[3].data["result"]?["answeredBy"] == "Catherine")

            // Seed 000's SSE: lower-case event names, the frame's data as `data:`.
            #expect(
                await activity.waitFor(within: .seconds(10)) { $0.contains { $0.event == "collaboration_complete" } })
            await activity.close()
            let first = activity.events
            #expect(first[0].event == "role_status_snapshot" && first[0].id == nil)
            #expect(first.contains { $0.event == "role_status_change" && Self.decode($0.data)?["status"] != nil })
            let idle = Self.decode(first[0].data)?["roles"]?.arrayValue ?? []
            #expect(
                idle.compactMap { $0["role"]?.stringValue } == roles && idle.allSatisfy { $0["status"] == "IDLE" },
                "\(idle)")
            let numbered = first.filter { $0.id != nil }
            #expect(numbered.count > 4 && numbered.count == first.count - 1)

            // Resuming it: the recovery answer, the snapshot, then the recovered events.
            let resumed = try await SSEClient.connect(
                port: port, path: activityPath,
                headers: ["Authorization": "Bearer \(token)", "Last-Event-ID": numbered[2].id!])
            #expect(await resumed.waitFor(within: .seconds(10)) { $0.count >= 4 })
            await resumed.close()
            let opening = resumed.events
            #expect(opening[0].event == "recovery" && opening[0].data.contains("\"recovered\":true"))
            #expect(opening[1].event == "role_status_snapshot" && opening[1].id == nil)
            #expect(opening[2].id == numbered[3].id)
        }
    }
}
