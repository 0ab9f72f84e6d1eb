import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization
import SwitchboardContracts
import SwitchboardRuntime

/// OpenAI's Chat Completions and Models APIs in front of the AI team, so any OpenAI SDK can talk to
/// Switchboard (docs/protocol.md, "Compatible front doors"). A completion is one collaboration run: the
/// gateway follows the conversation, submits the user's message, and answers with the run's final
/// answer, streamed as `chat.completion.chunk`s or whole.
struct OpenAICompatibility: Sendable {
    let streams: EventStreams

    static let conversationHeader = HTTPField.Name("X-Switchboard-Conversation-Id")!

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/v1/models") { request, _ in
            await Self.answering { try await models(request) }
        }
        router.post("/v1/chat/completions") { request, context in
            await Self.answering { try await completion(request, context) }
        }
    }

    // MARK: Models

    /// Which team, pattern and lead a `model` names: `<team>`, `<team>/<pattern>`, `<team>/<role>` or
    /// `<team>/<pattern>/<role>` (case-insensitive; a pattern name wins over a role of the same name).
    struct ModelChoice: Equatable {
        var pattern: CollaborationPattern?
        var lead: String?

        static func parse(_ model: String, team: TeamCard) -> ModelChoice? {
            let parts = model.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard let first = parts.first, first.lowercased() == team.name.lowercased(), parts.count <= 3 else {
                return nil
            }
            var choice = ModelChoice()
            for part in parts.dropFirst() {
                if choice.pattern == nil, choice.lead == nil,
                    let pattern = CollaborationPattern(rawValue: part.lowercased())
                {
                    choice.pattern = pattern
                } else if choice.lead == nil, let role = team.role(named: part) {
                    choice.lead = role
                } else {
                    return nil
                }
            }
            return choice
        }

        static func all(_ team: TeamCard) -> [String] {
            [team.name] + CollaborationPattern.allCases.map { "\(team.name)/\($0.rawValue)" }
                + team.roles.map { "\(team.name)/\($0.name)" }
        }
    }

    private func models(_ request: Request) async throws -> Response {
        _ = try await Gateway.authenticate(request, authority: streams.authority)
        let team = try await requireTeam()
        return Self.json(.ok, ModelList(data: ModelChoice.all(team).map { ModelList.Model(id: $0) }))
    }

    private func requireTeam() async throws -> TeamCard {
        guard let team = try await streams.roles.team() else {
            throw OpenAIError(
                .serviceUnavailable, "no orchestrator has announced its team yet; retry", type: "service_unavailable")
        }
        return team
    }

    // MARK: Chat completions

    struct CompletionRequest: Decodable {
        struct Message: Decodable {
            var role: String
            var content: JSONValue?
        }
        struct StreamOptions: Decodable {
            var includeUsage: Bool?
            enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
        }
        var model: String
        var messages: [Message]
        var stream: Bool?
        var streamOptions: StreamOptions?
        enum CodingKeys: String, CodingKey { case model, messages, stream, streamOptions = "stream_options" }
    }

    /// A message's text: a string, or the text parts of a content array.
    static func text(of content: JSONValue?) -> String? {
        switch content {
        case .string(let text): return text
        case .array(let parts):
            let texts = parts.compactMap { part in part["type"] == "text" ? part["text"]?.stringValue : nil }
            return texts.isEmpty ? nil : texts.joined(separator: "\n")
        default: return nil
        }
    }

    private func completion(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        let claims = try await Gateway.authenticate(request, authority: streams.authority)
        guard try await streams.admission.allowRequest(userID: claims.userID) else {
            throw OpenAIError(
                .tooManyRequests, "more than \(Int(streams.settings.commandsPerSecond)) requests per second; slow down",
                type: "rate_limit_error", code: "rate_limit_exceeded")
        }
        let body: CompletionRequest
        do {
            body = try await request.decode(as: CompletionRequest.self, context: context)
        } catch {
            throw OpenAIError(
                .badRequest,
                "the body is a Chat Completions request: {\"model\": \"…\", \"messages\": [{\"role\": \"user\", \"content\": \"…\"}]}"
            )
        }
        let team = try await requireTeam()
        guard let choice = ModelChoice.parse(body.model, team: team) else {
            throw OpenAIError(
                .notFound, "The model `\(body.model)` does not exist; GET /v1/models lists the team's models",
                param: "model",
                code: "model_not_found")
        }
        // The conversation's own history gives the roles their context; the last user message is what is asked.
        guard let last = body.messages.last(where: { $0.role == "user" }), let content = Self.text(of: last.content),
            !content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        else {
            throw OpenAIError(.badRequest, "messages must hold a user message with text content", param: "messages")
        }
        guard content.count <= streams.settings.maxContentLength else {
            throw OpenAIError(
                .badRequest,
                "the user message is \(content.count) characters; the limit is \(streams.settings.maxContentLength)",
                param: "messages", code: "content_too_long")
        }
        let conversationID: String
        if let named = request.headers[Self.conversationHeader] {
            guard CommandHandler.isValidID(named) else {
                throw OpenAIError(
                    .badRequest, "X-Switchboard-Conversation-Id is 1-128 letters, digits, '-', '_' or '.'")
            }
            conversationID = named
        } else {
            conversationID = "chat-\(UUID().uuidString.lowercased())"
        }
        do {
            try await streams.authorize(claims.userID, conversationID)
        } catch let error as HTTPError {
            throw OpenAIError(error.status, error.body ?? "forbidden", type: "permission_error")
        }

        let runID = UUID().uuidString.lowercased()
        let translator = CompletionTranslator(
            runID: runID, model: body.model, includeUsage: body.streamOptions?.includeUsage == true,
            promptTokens: TokenEstimate.count(content))
        let streaming = body.stream == true
        let session = ClientSession(
            userID: claims.userID, outboundLimitBytes: streams.settings.outboundLimitBytes,
            loop: context.channel.eventLoop, onOverflow: context.cutOff,
            formatter: { streaming ? translator.chunks(for: $0) : translator.observe($0) },
            completes: { _ in translator.isDone })
        do {
            try await streams.admission.admit(session)
        } catch {
            throw OpenAIError(error.status, error.message, type: "rate_limit_error")
        }
        do {
            try await streams.openRun(
                session: session, userID: claims.userID, conversationID: conversationID, content: content,
                pattern: choice.pattern?.rawValue, lead: choice.lead, runID: runID)
        } catch {
            await streams.admission.release(session)
            throw error
        }
        let headers: HTTPFields = [Self.conversationHeader: conversationID]
        if streaming {
            return await streams.respond(
                request, context, session: session, opening: translator.opening(), ending: "data: [DONE]\n\n",
                expiresAt: claims.expiresAt,
                headers: headers
            ) { _, reason in
                "data: \(Self.encode(OpenAIErrorBody("the stream was cut off: \(reason)", type: "server_error", param: nil, code: nil)))\n\n"
            }
        }
        let finished = await streams.awaitCompletion(session, within: streams.settings.frontDoorTimeout)
        guard finished, let completion = translator.completion() else {
            throw OpenAIError(
                .gatewayTimeout, "the team did not answer in time; the run goes on in \(conversationID)",
                type: "timeout")
        }
        var response = Self.json(.ok, completion)
        response.headers.append(contentsOf: headers)
        return response
    }

    // MARK: Errors and JSON

    /// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
    struct OpenAIError: Error {
        var status: HTTPResponse.Status
        var message: String
        var type: String
        var param: String?
        var code: String?

        init(
            _ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error",
            param: String? = nil, code: String? = nil
        ) {
            self.status = status
            self.message = message
            self.type = type
            self.param = param
            self.code = code
        }
    }

    /// Runs a handler and turns every failure into OpenAI's error JSON (SDKs parse nothing else).
    static func answering(_ handler: () async throws -> Response) async -> Response {
        let problem: OpenAIError
        do {
            return try await handler()
        } catch let failure as OpenAIError {
            problem = failure
        } catch let failure as HTTPError {
            problem = OpenAIError(
                failure.status, failure.body ?? failure.status.reasonPhrase,
                type: failure.status == .serviceUnavailable ? "service_unavailable" : "invalid_request_error",
                code: failure.status == .unauthorized ? "invalid_api_key" : nil)
        } catch {
            problem = OpenAIError(
                .serviceUnavailable, "the request could not be completed; retry", type: "service_unavailable")
        }
        var response = json(
            problem.status,
            OpenAIErrorBody(problem.message, type: problem.type, param: problem.param, code: problem.code))
        if problem.status == .serviceUnavailable { response.headers[.retryAfter] = "1" }
        return response
    }

    static func encode(_ value: some Encodable) -> String {
        (try? String(decoding: GatewayJSON.encoder.encode(JSONValueEncoder().encode(value)), as: UTF8.self)) ?? "{}"
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: encode(value))))
    }
}

/// Turns one run's channel events into OpenAI's chunks (streaming) or its completion object: the reply's
/// MESSAGE_STREAM_CHUNKs are the content; the run's COLLABORATION_COMPLETE ends it (its answer is the
/// content when the reply streamed nothing, e.g. an abandoned run). Called by the run's feed, in order.
final class CompletionTranslator: Sendable {
    let runID: String
    let model: String
    let includeUsage: Bool
    let promptTokens: Int
    let created = Int(Date().timeIntervalSince1970)

    private struct State {
        var streamed = ""
        var answer: String?
        var done = false
    }

    private let state = Mutex(State())

    init(runID: String, model: String, includeUsage: Bool, promptTokens: Int) {
        self.runID = runID
        self.model = model
        self.includeUsage = includeUsage
        self.promptTokens = promptTokens
    }

    var id: String { "chatcmpl-\(runID)" }
    var isDone: Bool { state.withLock { $0.done } }

    /// The first chunk, written as soon as the message is on the bus: the assistant's role.
    func opening() -> String {
        event(chunk(delta: .init(role: "assistant", content: ""), finishReason: nil))
    }

    /// A streamed event's chunks ("" for events that are not the run's reply or end).
    func chunks(for message: ChannelWire.Message) -> String {
        guard let update = update(message) else { return "" }
        switch update {
        case .content(let text): return event(chunk(delta: .init(content: text), finishReason: nil))
        case .end(let late, let completionTokens):
            var text = late.map { event(chunk(delta: .init(content: $0), finishReason: nil)) } ?? ""
            text += event(chunk(delta: .init(), finishReason: "stop"))
            if includeUsage {
                text += event(
                    CompletionChunk(
                        id: id, created: created, model: model, choices: [],
                        usage: CompletionUsage(prompt: promptTokens, completion: completionTokens)))
            }
            return text
        }
    }

    /// Non-streaming: only keeps track; the answer is read with `completion()`.
    func observe(_ message: ChannelWire.Message) -> String {
        _ = update(message)
        return ""
    }

    /// The `chat.completion` object, once the run has ended.
    func completion() -> Completion? {
        guard let answer = state.withLock({ $0.done ? ($0.streamed.isEmpty ? $0.answer ?? "" : $0.streamed) : nil })
        else {
            return nil
        }
        return Completion(
            id: id, created: created, model: model, choices: [.init(message: .init(content: answer))],
            usage: CompletionUsage(prompt: promptTokens, completion: TokenEstimate.count(answer)))
    }

    private enum Update {
        case content(String)
        /// `late`: the answer, when the reply streamed nothing.
        case end(late: String?, completionTokens: Int)
    }

    private func update(_ message: ChannelWire.Message) -> Update? {
        // Either frame type, read as the fields every one of its frames carries.
        let chunk = message.payload(FallbackReplyChunk.self)
        let complete = message.payload(CollaborationComplete.self)
        guard chunk != nil || complete != nil else { return nil }
        return state.withLock { state -> Update? in
            guard !state.done else { return nil }
            if let chunk {
                guard chunk.messageId == ReplyID.answering(runID), !chunk.chunk.isEmpty else { return nil }
                state.streamed += chunk.chunk
                return .content(chunk.chunk)
            }
            guard let complete, complete.runId == runID else { return nil }
            state.done = true
            let answer = complete.result.answer
            state.answer = answer
            let late = state.streamed.isEmpty && !answer.isEmpty ? answer : nil
            return .end(
                late: late, completionTokens: TokenEstimate.count(state.streamed.isEmpty ? answer : state.streamed))
        }
    }

    private func chunk(delta: CompletionChunk.Delta, finishReason: String?) -> CompletionChunk {
        // With include_usage, every chunk but the last carries "usage": null (as OpenAI's do).
        CompletionChunk(
            id: id, created: created, model: model, choices: [.init(delta: delta, finishReason: finishReason)],
            usage: includeUsage ? .some(nil) : nil)
    }

    private func event(_ value: some Encodable) -> String { "data: \(OpenAICompatibility.encode(value))\n\n" }
}

/// Usage figures without a tokenizer: words, with each CJK character counted as one (the chunker's
/// notion of a token). An estimate, documented as such.
enum TokenEstimate {
    static func count(_ text: String) -> Int {
        var count = 0
        var inWord = false
        for character in text {
            if character.isWhitespace {
                inWord = false
            } else if let scalar = character.unicodeScalars.first, Self.isCJK(scalar) {
                count += 1
                inWord = false
            } else if !inWord {
                inWord = true
                count += 1
            }
        }
        return count
    }

    static func isCJK(_ scalar: Unicode.Scalar) -> Bool {
        (0x3040...0x30FF).contains(scalar.value) || (0x3400...0x9FFF).contains(scalar.value)
            || (0xAC00...0xD7AF).contains(scalar.value) || (0x20000...0x2FFFF).contains(scalar.value)
    }
}
