import CompressNIO
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Metrics
import NIOCore
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime

/// Server-Sent Events (seed 000) and the REST way to send a message.
struct EventStreams: Sendable {
    let context: ServiceContext
    let authority: TokenAuthority
    let hub: DeliveryHub
    let access: ConversationAccess
    let history: ChannelHistory
    let admission: Admission
    let settings: GatewaySettings
    let roles: RoleDirectory

    /// Counts a stream against its user's connections (`release` it when it ends); HTTP errors when refused.
    func admit(_ session: ClientSession) async throws {
        do {
            try await admission.admit(session)
        } catch {
            throw error.httpError
        }
    }

    func addRoutes(to router: Router<GatewayRequestContext>) {
        addNotificationRoutes(to: router)
        router.get("/api/v1/conversations/:id/messages/stream") { request, context in
            let id = try conversationID(context)
            return try await stream(request, context, channel: .conversation(id), ownedConversation: id)
        }
        router.get("/api/v1/conversations/:id/roles/activity") { request, context in
            let id = try conversationID(context)
            // Opens with every role's state (ROLE_STATUS_SNAPSHOT, no id), then the recovered and live events.
            return try await stream(request, context, channel: Channel(.roles, id), ownedConversation: id) {
                try Self.unnumberedEvent(await roles.snapshot(conversation: id, channel: .roles(id)))
            }
        }
        router.get("/api/v1/events/system") { request, context in
            try await stream(request, context, channel: .system, ownedConversation: nil)
        }
        router.post("/api/v1/conversations/:id/messages") { request, context -> Response in
            let id = try conversationID(context)
            let claims = try await Gateway.authenticate(request, authority: authority)
            try await admission.checkRequest(userID: claims.userID)
            try await authorize(claims.userID, id)
            struct Body: Decodable {
                var content: String
                var clientMessageId: String?
                var pattern: String?
                var busyPolicy: String?
            }
            let body: Body
            do {
                body = try await request.decode(as: Body.self, context: context)
            } catch {
                throw HTTPError(
                    .badRequest, message: "the body is JSON {\"content\": \"…\", \"clientMessageId\"?: \"…\"}")
            }
            guard !body.content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw HTTPError(.badRequest, message: "content must not be empty")
            }
            guard body.content.count <= settings.maxContentLength else {
                throw HTTPError(
                    .contentTooLarge, message: "content is limited to \(settings.maxContentLength) characters")
            }
            if let clientID = body.clientMessageId, !GatewayLimits.isValidClientID(clientID) {
                throw HTTPError(.badRequest, message: "clientMessageId is 1-128 characters")
            }
            let messageID = try await MessageSubmitter(context: self.context).submit(
                userID: claims.userID, conversationID: id, content: body.content,
                clientMessageID: body.clientMessageId ?? UUID().uuidString.lowercased(), pattern: body.pattern,
                busyPolicy: body.busyPolicy)
            let json = #"{"messageId":"\#(messageID)","conversationId":"\#(id)","status":"accepted"}"#
            return Response(
                status: .accepted, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: json)))
        }
    }

    /// `POST /api/v1/notifications` (to one user; `POST /api/broadcast` is seed 003's, in BlueVRoutes):
    /// admin or service tokens only. Body: `{"userId", "type": info|warning|error|success, "title",
    /// "message", "persistent"?}`; answered 202 once Kafka has the event.
    func addNotificationRoutes(to router: Router<GatewayRequestContext>) {
        struct Notification: Decodable {
            var userId: String?
            var type: String?
            var title: String
            var message: String
            var persistent: Bool?
        }
        @Sendable func publish(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
            let claims = try await Gateway.authenticate(request, authority: authority)
            guard claims.isPrivileged else {
                throw HTTPError(.forbidden, message: "notifications need an admin or service token")
            }
            let body: Notification
            do {
                body = try await request.decode(as: Notification.self, context: context)
            } catch {
                throw HTTPError(
                    .badRequest, message: #"the body is JSON {"userId", "type", "title", "message", "persistent"?}"#)
            }
            let kind = body.type ?? "info"
            guard ["info", "warning", "error", "success"].contains(kind) else {
                throw HTTPError(.badRequest, message: "type is info, warning, error or success")
            }
            guard let user = body.userId, CommandHandler.isValidID(user) else {
                throw HTTPError(.badRequest, message: "userId is required")
            }
            let channel = SwitchboardContracts.Channel.user(user)
            let event = try ClientEvent(
                channel: channel,
                payload: UserNotification(
                    type: kind, title: body.title, message: body.message, persistent: body.persistent ?? false,
                    from: claims.userID))
            let envelope = self.context.envelope(event, routingKey: channel.description)
            try await self.context.publish(envelope, to: Topics.clientEvents)
            let json = #"{"id":"\#(envelope.id.uuidString.lowercased())","channel":"\#(channel)","status":"accepted"}"#
            return Response(
                status: .accepted, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(string: json)))
        }
        router.post("/api/v1/notifications") { request, context in try await publish(request, context) }
    }

    private func conversationID(_ context: GatewayRequestContext) throws -> String {
        guard let id = context.parameters.get("id"), CommandHandler.isValidID(id) else {
            throw HTTPError(.badRequest, message: "a conversation id is 1-128 letters, digits, '-', '_' or '.'")
        }
        return id
    }

    func authorize(_ userID: String, _ conversationID: String) async throws {
        guard try await access.authorize(userID: userID, conversationID: conversationID) else {
            throw HTTPError(.forbidden, message: "conversation \(conversationID) belongs to another user")
        }
    }

    /// The resume position of an SSE request: `Last-Event-ID` (header, or `?lastEventId=` for clients
    /// that cannot set headers) in the `<epoch>:<offset>` form of every event's `id:`.
    static func lastEventPosition(_ request: Request) throws -> StreamPosition? {
        let lastEventID =
            request.headers[HTTPField.Name("Last-Event-ID")!]
            ?? request.uri.queryParameters["lastEventId"].map(String.init)
        guard let lastEventID, !lastEventID.isEmpty else { return nil }
        guard let position = StreamPosition(lastEventID: lastEventID) else {
            throw HTTPError(.badRequest, message: "Last-Event-ID is <epoch>:<offset>, as sent in each event's id")
        }
        return position
    }

    /// One SSE stream of a channel, from `Last-Event-ID` or from now. `snapshot` renders an event shown
    /// before any recovered one.
    private func stream(
        _ request: Request, _ context: GatewayRequestContext, channel: SwitchboardContracts.Channel,
        ownedConversation: String?,
        snapshot: (() async throws -> String)? = nil
    ) async throws -> Response {
        let claims = try await Gateway.authenticate(request, authority: authority)
        try await admission.checkRequest(userID: claims.userID)
        if let ownedConversation { try await authorize(claims.userID, ownedConversation) }
        let since = try Self.lastEventPosition(request)
        let session = ClientSession(
            userID: claims.userID, outboundLimitBytes: settings.outboundLimitBytes, loop: context.channel.eventLoop,
            onOverflow: context.cutOff,
            format: .serverSentEvents)
        try await admit(session)
        let opened: ChannelFeed.Opened
        do {
            opened = try await session.follow(channel, since: since, hub: hub, history: history, snapshot: snapshot)
        } catch {
            await admission.release(session)
            throw error
        }
        var preamble = "retry: 3000\n\n"
        if since != nil {
            // SSE has no acknowledgement: say whether the stream continues exactly where the client was.
            let position = opened.position.map { #","offset":\#($0.offset),"epoch":"\#($0.epoch)""# } ?? ""
            preamble += "event: recovery\ndata: {\"recovered\":\(opened.recovered)\(position)}\n\n"
        }
        return await respond(request, context, session: session, opening: preamble, expiresAt: claims.expiresAt)
    }

    /// Writes a session's queue as an SSE response, after `opening`. A stream ends when its client goes,
    /// when it is cut off (`event: close`), or, once the session is complete, with `ending`.
    /// `interruption` renders the end of a stream cut off before it was complete (default: `event: close`).
    /// A stream outlives no token: at `expiresAt` it is cut off with 4500, as a WebSocket is.
    func respond(
        _ request: Request, _ context: GatewayRequestContext, session: ClientSession, opening: String,
        ending: String = "",
        expiresAt: Date?, headers extraHeaders: HTTPFields = [:],
        interruption: (@Sendable (CloseCode, String) -> String)? = nil
    ) async -> Response {
        await context.limitSendBuffer(to: settings.socketSendBufferBytes)
        let gzip = request.headers[.acceptEncoding].map(SSEWireEncoder.acceptsGzip) ?? false
        let hub = self.hub
        let admission = self.admission
        let pingInterval = settings.ssePingInterval
        let body = ResponseBody { writer in
            do {
                let encoder = try SSEWireEncoder(gzip: gzip)
                try await writer.write(try encoder.encode(opening))
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        while !Task.isCancelled {
                            try await Task.sleep(for: pingInterval)
                            session.outbound.enqueue(": ping\n\n", ephemeral: true)
                        }
                    }
                    if let expiresAt {
                        group.addTask {
                            try await Task.sleep(
                                for: .milliseconds(max(0, Int64(expiresAt.timeIntervalSinceNow * 1000))))
                            GatewayMetrics.tokenExpiryCloses.increment()
                            session.outbound.close(.unauthorized, reason: "token expired")
                        }
                    }
                    loop: while let item = await session.next() {
                        switch item {
                        case .frame(let text, let createdAt):
                            try await writer.write(try encoder.encode(text))
                            GatewayMetrics.recordWritten(createdAt: createdAt)
                        case .close(let code, let reason):
                            if session.isComplete {
                                if !ending.isEmpty { try await writer.write(try encoder.encode(ending)) }
                            } else {
                                let text =
                                    interruption?(code, reason)
                                    ?? "event: close\ndata: {\"code\":\(code.rawValue),\"reason\":\"\(reason)\"}\n\n"
                                try await writer.write(try encoder.encode(text))
                            }
                            break loop
                        }
                    }
                    group.cancelAll()
                }
                if let trailer = try encoder.finish() { try await writer.write(trailer) }
                try await writer.finish(nil)
            } catch {
                session.outbound.finish()
            }
            await session.unfollowAll()
            await admission.release(session)
        }
        var headers: HTTPFields = [
            .contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache",
            HTTPField.Name("X-Accel-Buffering")!: "no", .vary: "Accept-Encoding",
        ]
        if gzip { headers[.contentEncoding] = "gzip" }
        headers.append(contentsOf: extraHeaders)
        return Response(status: .ok, headers: headers, body: body)
    }

    /// A front door's run: follows the conversation first, then submits the message (its id is the
    /// run's, `runID`), so not one event of the run is missed.
    func openRun(
        session: ClientSession, userID: String, conversationID: String, content: String, pattern: String?,
        lead: String?,
        runID: String
    ) async throws {
        _ = try await session.follow(.conversation(conversationID), since: nil, hub: hub, history: history)
        do {
            _ = try await MessageSubmitter(context: context).submit(
                userID: userID, conversationID: conversationID, content: content, clientMessageID: runID,
                pattern: pattern,
                leadRole: lead, messageID: runID)
        } catch {
            await session.unfollowAll()
            throw error
        }
    }

    /// Waits (without a socket) until the session is complete, cut off, or `timeout` passes; then
    /// stops following. True when complete.
    func awaitCompletion(_ session: ClientSession, within timeout: Duration) async -> Bool {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                // Unblocks the wait below; a cancelled sleep (the run completed) must not.
                if (try? await Task.sleep(for: timeout)) != nil { session.outbound.finish() }
            }
            while let item = await session.next() {
                if case .close = item { break }
            }
            group.cancelAll()
        }
        await admission.release(session)
        await session.unfollowAll()
        return session.isComplete
    }

    /// A frame shown once and never numbered (no `id:`): it is no position to resume from.
    static func unnumberedEvent(_ frame: ServerFrame) throws -> String {
        let data = ChatCentreDialect.data(frameType: frame.type, frameJSON: try FrameEncoding.json(frame))
        return "event: \(ChatCentreDialect.eventName(frame.type))\ndata: \(data)\n\n"
    }
}

/// What an SSE stream puts on the wire: its text as is, or (when the client accepts gzip) one gzip
/// stream flushed after every write, so compression never holds an event back. Used by the one task
/// that writes the stream.
final class SSEWireEncoder {
    private let compressor: (any NIOCompressor)?

    init(gzip: Bool) throws {
        guard gzip else {
            compressor = nil
            return
        }
        // A 16 KiB window and small state: SSE events are small, and there may be many streams.
        let compressor = CompressionAlgorithm.gzip(
            configuration: ZlibConfiguration(windowSize: .window16k, memoryLevel: .memory8K)
        ).compressor
        try compressor.startStream()
        self.compressor = compressor
    }

    /// `Accept-Encoding` lists gzip with a non-zero quality.
    static func acceptsGzip(_ acceptEncoding: String) -> Bool {
        acceptEncoding.split(separator: ",").contains { entry in
            let parts = entry.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.first?.lowercased() == "gzip" else { return false }
            return !parts.dropFirst().contains { $0.replacingOccurrences(of: " ", with: "") == "q=0" }
        }
    }

    func encode(_ text: String) throws -> ByteBuffer {
        var input = ByteBuffer(string: text)
        guard let compressor else { return input }
        return try input.compressStream(with: compressor, flush: .sync)
    }

    /// The end of the gzip stream, if there is one.
    func finish() throws -> ByteBuffer? {
        guard let compressor else { return nil }
        var trailer = ByteBufferAllocator().buffer(capacity: 64)
        try compressor.finishDeflate(to: &trailer)
        try compressor.finishStream()
        return trailer
    }
}
