import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization
import SwitchboardContracts
import SwitchboardRuntime

/// BluePlan's streaming endpoints (seed 001) in front of the AI team: `POST /novachat` (Nova3: a
/// supervisor plans, the specialists run in parallel, the supervisor merges: the `parallel` pattern) and
/// `POST /loomichat` (Loomi: one concierge that delegates, choosing each next specialist from the last
/// result: the `dynamic` pattern). Each answers one run as SSE `data: {"event_type", "agent_source",
/// "timestamp", "payload"}` events with the conversation's channel position as `id:`, resumable with
/// `Last-Event-ID` like every other stream; the stream ends after the run's last event.
struct BluePlanCompatibility: Sendable {
    let streams: EventStreams

    enum Mode: Sendable {
        case nova, loomi

        var pattern: CollaborationPattern { self == .nova ? .parallel : .dynamic }
        /// The agent that speaks for the run as a whole (plan at the start, merged answer at the end).
        var supervisor: String { self == .nova ? "nova3_supervisor" : "loomi_concierge" }
        var conversationPrefix: String { self == .nova ? "nova" : "loomi" }
    }

    func addRoutes(to router: Router<GatewayRequestContext>) {
        // Browsers call these from their own origin (the seed answers with CORS headers).
        let doors = router.group().add(middleware: BluePlanCORS())
        for (path, mode) in [("/novachat", Mode.nova), ("/loomichat", .loomi)] {
            doors.post(RouterPath(path)) { request, context in
                try await chat(request, context, mode: mode, body: try await Self.body(of: request, context))
            }
            // The seed's own client is an EventSource: a GET with the request in the query.
            doors.get(RouterPath(path)) { request, context in
                try await chat(request, context, mode: mode, body: Self.query(of: request))
            }
            doors.on(RouterPath(path), method: .options) { _, _ in Response(status: .noContent) }
        }
    }

    struct ChatRequest: Decodable {
        var message: String?
        var query: String?
        var conversationId: String?
        enum CodingKeys: String, CodingKey { case message, query, conversationId = "conversation_id" }
    }

    static func body(of request: Request, _ context: GatewayRequestContext) async throws -> ChatRequest {
        do {
            return try await request.decode(as: ChatRequest.self, context: context)
        } catch {
            throw HTTPError(.badRequest, message: #"the body is JSON {"message": "…", "conversation_id"?: "…"}"#)
        }
    }

    /// A GET's request: `?message=…&conversation_id=…` (the token as `?token=`).
    static func query(of request: Request) -> ChatRequest {
        let query = request.uri.queryParameters
        return ChatRequest(
            message: query["message"].map(String.init), query: query["query"].map(String.init),
            conversationId: query["conversation_id"].map(String.init))
    }

    private func chat(_ request: Request, _ context: GatewayRequestContext, mode: Mode, body: ChatRequest) async throws
        -> Response
    {
        let claims = try await Gateway.authenticate(request, authority: streams.authority)
        try await streams.admission.checkRequest(userID: claims.userID)
        if let id = body.conversationId, !CommandHandler.isValidID(id) {
            throw HTTPError(.badRequest, message: "conversation_id is 1-128 letters, digits, '-', '_' or '.'")
        }
        let since = try EventStreams.lastEventPosition(request)
        let content = (body.message ?? body.query ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        if since == nil {
            guard !content.isEmpty else { throw HTTPError(.badRequest, message: "message must not be empty") }
            guard content.count <= streams.settings.maxContentLength else {
                throw HTTPError(
                    .contentTooLarge, message: "message is limited to \(streams.settings.maxContentLength) characters")
            }
        } else if body.conversationId == nil {
            throw HTTPError(.badRequest, message: "resuming (Last-Event-ID) needs the conversation_id of the stream")
        }
        let conversationID = body.conversationId ?? "\(mode.conversationPrefix)-\(UUID().uuidString.lowercased())"
        try await streams.authorize(claims.userID, conversationID)
        // The position is the end of the run the stream showed: nothing more will come. 204 is what
        // stops an EventSource from reconnecting after the stream closed.
        if let since, try await endsRun(.conversation(conversationID), at: since) {
            return Response(status: .noContent, headers: [OpenAICompatibility.conversationHeader: conversationID])
        }

        // A new request starts a run with a known id; a resumed one follows the run its position is in.
        let runID = since == nil ? UUID().uuidString.lowercased() : nil
        let translator = BluePlanTranslator(mode: mode, runID: runID)
        let session = ClientSession(
            userID: claims.userID, outboundLimitBytes: streams.settings.outboundLimitBytes,
            loop: context.channel.eventLoop, onOverflow: context.cutOff,
            formatter: translator.event(for:), completes: { _ in translator.isDone })
        try await streams.admit(session)
        let headers: HTTPFields = [OpenAICompatibility.conversationHeader: conversationID]
        do {
            if let runID {
                try await streams.openRun(
                    session: session, userID: claims.userID, conversationID: conversationID, content: content,
                    pattern: mode.pattern.rawValue, lead: nil, runID: runID)
            } else {
                let opened = try await session.follow(
                    .conversation(conversationID), since: since, hub: streams.hub, history: streams.history)
                guard opened.recovered else {
                    // Never a partial replay: say so, and let the client reload the conversation.
                    await streams.admission.release(session)
                    await session.unfollowAll()
                    let error = translator.error(
                        "cannot resume from \(since?.description ?? ""): the position is no longer kept; reload the conversation",
                        type: "resume_failed", conversationID: conversationID)
                    var fields = headers
                    fields[.contentType] = "text/event-stream; charset=utf-8"
                    fields[.cacheControl] = "no-cache"
                    return Response(
                        status: .ok, headers: fields,
                        body: .init(byteBuffer: ByteBuffer(string: "retry: 3000\n\n" + error)))
                }
            }
        } catch {
            await streams.admission.release(session)
            throw error
        }
        return await streams.respond(
            request, context, session: session, opening: "retry: 3000\n\n", expiresAt: claims.expiresAt,
            headers: headers
        ) { _, reason in
            translator.error(
                "the stream was cut off (\(reason)); resume with Last-Event-ID", type: "disconnected",
                conversationID: conversationID)
        }
    }

    /// Whether the channel's event at `position` is a run's COLLABORATION_COMPLETE (a stream's last event).
    private func endsRun(_ channel: SwitchboardContracts.Channel, at position: StreamPosition) async throws -> Bool {
        guard position.offset > 0 else { return false }
        let read = try await streams.history.read(channel, after: position.offset - 1, limit: 1)
        guard read.top?.epoch == position.epoch, let event = read.events.first, event.offset == position.offset else {
            return false
        }
        return event.frameType == FrameType.collaborationComplete
    }
}

/// Seed 001's CORS headers on every answer of the BluePlan doors (errors included), and the preflight.
/// `Authorization` is listed beside `*`: browsers never let the wildcard cover it.
struct BluePlanCORS: RouterMiddleware {
    typealias Context = GatewayRequestContext

    static let headers: HTTPFields = [
        .accessControlAllowOrigin: "*",
        .accessControlAllowHeaders: "*, Authorization, Content-Type, Last-Event-ID",
        .accessControlAllowMethods: "GET, POST, OPTIONS",
        .accessControlExposeHeaders: OpenAICompatibility.conversationHeader.canonicalName,
        .accessControlMaxAge: "600",
    ]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            var response = try await next(request, context)
            response.headers.append(contentsOf: Self.headers)
            return response
        } catch var error as HTTPError {
            error.headers.append(contentsOf: Self.headers)
            throw error
        }
    }
}

/// Turns one run's channel events into seed 001 events: COLLABORATION_START is the supervisor's
/// agent_start (its plan), each role's AGENT_START / chunks / AGENT_COMPLETE / AGENT_ERROR pass through
/// with their seed fields, and COLLABORATION_COMPLETE is the supervisor's agent_complete with the merged
/// answer, which ends the stream. Called by the run's feed, in order.
final class BluePlanTranslator: Sendable {
    let mode: BluePlanCompatibility.Mode
    private struct State {
        /// The run followed; a resumed stream adopts the first run it sees after its position.
        var runID: String?
        var done = false
    }
    private let state: Mutex<State>

    init(mode: BluePlanCompatibility.Mode, runID: String?) {
        self.mode = mode
        state = Mutex(State(runID: runID))
    }

    var isDone: Bool { state.withLock { $0.done } }

    static let shown: Set<String> = [
        FrameType.collaborationStart, FrameType.collaborationComplete, FrameType.agentStart, FrameType.agentChunk,
        FrameType.agentComplete, FrameType.agentError, FrameType.messageStreamChunk,
    ]

    func event(for message: ChannelWire.Message) -> String {
        guard !message.isEphemeral, Self.shown.contains(message.frameType),
            let frame = try? JSONDecoder().decode(ServerFrame.self, from: Data(message.frameJSON.utf8))
        else { return "" }
        let accepted = state.withLock { state -> Bool in
            guard !state.done else { return false }
            // The orchestrator's fallback reply has no runId, only the reply's id.
            let run =
                frame.data["runId"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
                ?? frame.data["messageId"]?.stringValue.flatMap(ReplyID.answered(by:)).map { String($0.prefix(36)) }
            guard let run else { return false }
            if state.runID == nil { state.runID = run }
            guard state.runID == run else { return false }
            if frame.type == FrameType.collaborationComplete { state.done = true }
            return true
        }
        guard accepted, let event = translate(frame) else { return "" }
        return "id: \(message.position)\ndata: \(OpenAICompatibility.encode(event))\n\n"
    }

    /// The seed 001 event of one of the run's frames (nil for a frame it has none for), made from the
    /// frame's payload.
    private func translate(_ frame: ServerFrame) -> (any Encodable & Sendable)? {
        let time = Date(timeIntervalSince1970: Double(frame.timestamp) / 1000)
        func payload<Payload: Decodable>(_: Payload.Type) -> Payload? { try? frame.data.decode(as: Payload.self) }
        switch frame.type {
        case FrameType.collaborationStart:
            return payload(CollaborationStart.self).map {
                AgentEventFields(
                    type: AgentEvent.agentStart, source: mode.supervisor, payload: BluePlanRunStart($0), at: time)
            }
        case FrameType.collaborationComplete:
            return payload(CollaborationComplete.self).map {
                AgentEventFields(
                    type: AgentEvent.agentComplete, source: mode.supervisor, payload: BluePlanRunComplete($0), at: time)
            }
        default:
            // A role's events carry the seed's fields already: they pass through as they came.
            if let event = payload(AgentEventFields<JSONValue>.self) { return event }
            // The orchestrator's fallback reply (a final role that failed) carries none: it is the whole
            // reply in one chunk.
            return payload(FallbackReplyChunk.self).map {
                AgentEventFields(
                    type: AgentEvent.llmChunk, source: $0.role,
                    payload: LLMChunkPayload(content: $0.chunk, isComplete: true),
                    at: time)
            }
        }
    }

    /// An `error` event (no id: it is no position to resume from).
    func error(_ message: String, type: String, conversationID: String) -> String {
        let payload = AgentEvent.ErrorPayload(
            error: message, errorType: type,
            context: .init(
                agentSource: mode.supervisor, conversationId: conversationID, runId: state.withLock { $0.runID }),
            retryCount: 0)
        let event = AgentEventFields(type: AgentEvent.error, source: mode.supervisor, payload: payload)
        return "data: \(OpenAICompatibility.encode(event))\n\n"
    }
}
