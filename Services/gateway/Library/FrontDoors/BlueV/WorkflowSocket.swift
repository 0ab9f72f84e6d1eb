import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOWebSocket
import Synchronization
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardStore
import SwitchboardTracing
import SwitchboardWorkflow

/// BlueV's workflow protocol (seed 003) on `/ws/{session_id}`, and the runs' REST routes. Definitions are
/// validated here, before anything is queued; runs execute on the workflow-runners; their events come
/// back through the delivery layer on the channel `workflow:<run id>`, so a client that reconnects
/// re-attaches with the last offset it saw and gets what it missed. See docs/workflows.md.
struct WorkflowSocket: WebSocketDoor {
    let context: ServiceContext
    let authority: TokenAuthority
    let hub: DeliveryHub
    let history: ChannelHistory
    let admission: Admission
    /// The routing tables: connections per gateway, for admins' `GET /api/connections`.
    let routing: ConnectionRegistry
    let settings: GatewaySettings
    /// Where finished runs are kept once Redis lets them go.
    let archive: HistoryStore

    var store: WorkflowRunStore { WorkflowRunStore(redis: context.redis, archive: archive) }

    func addRoutes(to router: Router<GatewayRequestContext>) {
        addHistoryRoutes(to: router)
        addSeedRoutes(to: router)
    }

    // MARK: The socket

    var pathPattern: String { "/ws/{session_id}" }

    var directory: BlueVDirectory {
        BlueVDirectory(
            redis: context.redis, gatewayID: context.configuration.instanceID, ttlSeconds: settings.routingTTLSeconds)
    }

    func admit(_ request: UpgradeRequest) async throws -> any WebSocketDoorSession {
        let claims = try await admission.authenticate(token: request.bearerToken)
        guard let sessionID = request.parameters["session_id"], Self.isValidSessionID(sessionID) else {
            throw HTTPError(.badRequest, message: "a session id is 1-128 letters, digits, '-', '_' or '.'")
        }
        try admission.checkAcceptingConnections()
        var clientInfo: [String: JSONValue] = [:]
        if let agent = request.headers.first(name: "user-agent") { clientInfo["user_agent"] = .string(agent) }
        return StreamingDoorSession(expiresAt: claims.expiresAt) { [clientInfo] messages, socket in
            await serve(
                claims: claims, sessionID: sessionID, clientInfo: clientInfo, messages: messages, socket: socket)
        }
    }

    private func serve(
        claims: SwitchboardClaims, sessionID: String, clientInfo: [String: JSONValue],
        messages: AsyncStream<WebSocketMessage>,
        socket: WebSocketOutbound
    ) async {
        let session = ClientSession(userID: claims.userID, socket: socket)
        do {
            try await admission.admit(session)
        } catch {
            return socket.close(error.closeCode, reason: error.message)
        }
        let connection = WorkflowConnection(session: session, sessionID: sessionID, clientInfo: clientInfo)
        await greet(connection)
        // Broadcasts (`POST /api/broadcast`) come on the system channel.
        do {
            try await connection.followSystem(hub: hub, history: history)
        } catch {
            context.logger.warning("a workflow socket will miss broadcasts", metadata: ["error": "\(error)"])
        }
        // The seed's application-level heartbeat, on top of WebSocket pings: a timer on the socket's loop.
        socket.every(TimeAmount(settings.pingInterval)) {
            connection.send(BlueVFrame.Heartbeat(timestamp: WorkflowTime.iso(Clock.epochMilliseconds())))
            connection.recordHeartbeat()
        }
        let directory = self.directory
        await withTaskGroup(of: Void.self) { group in
            // The connection's line in `GET /api/connections`, kept alive while the socket is.
            group.addTask {
                while !Task.isCancelled {
                    await directory.publish(connection.entry(gateway: directory.gatewayID))
                    try? await Task.sleep(for: .seconds(max(1, directory.ttlSeconds / 3)))
                }
            }
            for await message in messages {
                await handle(message, connection: connection)
            }
            group.cancelAll()
        }
        await directory.remove(connectionID: session.id, userID: session.userID)
        await admission.release(session)
        await connection.unfollowAll()
    }

    /// connection_established, with the runs of this session (to re-attach to) under the client's ids.
    private func greet(_ connection: WorkflowConnection) async {
        var workflows: [BlueVFrame.SessionRun] = []
        if let runs = try? await store.runs(ofSession: connection.sessionID, user: connection.userID) {
            for run in runs {
                guard let record = try? await store.record(run.runID) else { continue }
                workflows.append(.init(workflow_id: run.workflowID, run_id: run.runID, status: record.status.rawValue))
            }
        }
        connection.send(
            BlueVFrame.ConnectionEstablished(
                session_id: connection.sessionID, timestamp: WorkflowTime.iso(Clock.epochMilliseconds()),
                user_id: connection.userID,
                workflows: workflows))
    }

    // MARK: Client messages

    func handle(_ message: WebSocketMessage, connection: WorkflowConnection) async {
        guard case .text(let text) = message,
            let object = (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)))?.objectValue
        else {
            return fail(connection, code: .badFrame, "a message is a JSON object with a type", requestID: nil)
        }
        let requestID = object["request_id"]?.stringValue ?? object["id"]?.stringValue
        guard let type = object["type"]?.stringValue else {
            return fail(connection, code: .badFrame, "the message has no type", requestID: requestID)
        }
        do {
            if type != "heartbeat_response", try await !admission.allowRequest(userID: connection.userID) {
                throw CommandError(
                    .rateLimited, "more than \(Int(settings.commandsPerSecond)) requests per second; slow down")
            }
            // The root of the trace that follows a request through the runners, as a chat command's.
            try await Tracing.withSpan(
                type, kind: .server, parent: .root,
                attributes: [
                    ("switchboard.request.id", .string(requestID ?? "")), ("enduser.id", .string(connection.userID)),
                ]
            ) {
                switch type {
                case "execute_workflow": try await execute(object, connection: connection, requestID: requestID)
                case "control_workflow": try await control(object, connection: connection, requestID: requestID)
                case "provide_input": try await provideInput(object, connection: connection, requestID: requestID)
                case "subscribe": try await subscribe(object, connection: connection, requestID: requestID)
                case "unsubscribe": try await unsubscribe(object, connection: connection, requestID: requestID)
                case "heartbeat_response":
                    connection.recordHeartbeat()
                    await directory.publish(connection.entry(gateway: directory.gatewayID))
                default:
                    // The seed's own words for an unknown type.
                    throw CommandError(.unknownType, "Unknown message type: \(type)")
                }
            }
        } catch let error as ExecutionError {
            connection.send(
                BlueVFrame.ExecutionError(
                    error: error.message, code: error.code, workflow_id: error.workflowID, request_id: requestID,
                    timestamp: WorkflowTime.iso(Clock.epochMilliseconds())))
            if connection.recordError() >= settings.maxConsecutiveErrors {
                connection.session.outbound.close(.badRequest, reason: "too many invalid messages")
            }
        } catch let error as CommandError {
            fail(connection, code: error.code, error.message, requestID: requestID)
        } catch {
            context.logger.warning("workflow command failed", metadata: ["error": "\(error)"])
            let message = "the command could not be carried out; try again"
            if type == "execute_workflow" {
                connection.send(
                    BlueVFrame.ExecutionError(
                        error: message, code: ErrorCode.unavailable.rawValue, workflow_id: nil, request_id: requestID,
                        timestamp: WorkflowTime.iso(Clock.epochMilliseconds())))
            } else {
                fail(connection, code: .unavailable, message, requestID: requestID)
            }
        }
    }

    /// The seed's `{"type": "error", "message": …}`, with Switchboard's code beside it.
    private func fail(_ connection: WorkflowConnection, code: ErrorCode, _ message: String, requestID: String?) {
        connection.send(
            BlueVFrame.Failure(
                message: message, code: code.rawValue, request_id: requestID,
                timestamp: WorkflowTime.iso(Clock.epochMilliseconds())))
        if connection.recordError() >= settings.maxConsecutiveErrors {
            connection.session.outbound.close(.badRequest, reason: "too many invalid messages")
        }
    }

    /// A failure of `execute_workflow` before its run started: the seed's `workflow_execution_error`.
    struct ExecutionError: Error {
        var code: String
        var message: String
        var workflowID: String?
    }

    private func execute(_ message: [String: JSONValue], connection: WorkflowConnection, requestID: String?)
        async throws
    {
        guard let workflowJSON = message["workflow"], workflowJSON.objectValue != nil else {
            throw ExecutionError(
                code: ErrorCode.invalidArgument.rawValue,
                message: "execute_workflow needs a workflow object {id?, nodes, connections}")
        }
        var definition: WorkflowDefinition
        do {
            definition = try JSONDecoder().decode(WorkflowDefinition.self, from: try JSONEncoder().encode(workflowJSON))
        } catch {
            return connection.send(
                validationError(
                    [
                        ValidationIssue(
                            .malformedDefinition, "the workflow is not a valid definition: \(Self.describe(error))")
                    ],
                    workflowID: workflowJSON["id"]?.stringValue, requestID: requestID))
        }
        // The client's id names the run in every frame; one is made only when the client gave none.
        let workflowID = definition.id ?? UUID().uuidString.lowercased()
        guard CommandHandler.isValidID(workflowID) else {
            throw ExecutionError(
                code: ErrorCode.invalidArgument.rawValue,
                message: "workflow.id is 1-128 letters, digits, '-', '_' or '.'",
                workflowID: workflowID)
        }
        definition.id = workflowID
        let problems = WorkflowValidator.problems(of: definition)
        guard problems.isEmpty else {
            return connection.send(validationError(problems, workflowID: workflowID, requestID: requestID))
        }
        let previous = try await store.run(
            workflowID: workflowID, session: connection.sessionID, user: connection.userID)
        if let previous, let record = try await store.record(previous), !record.status.isTerminal {
            throw ExecutionError(
                code: "duplicate_workflow_id",
                message:
                    "workflow \(workflowID) is already \(record.status.rawValue) in this session; wait for its end or use another id",
                workflowID: workflowID)
        }
        let inputs = message["inputs"]?.objectValue ?? [:]
        let runID = UUID().uuidString.lowercased()
        let now = Clock.epochMilliseconds()
        var record = WorkflowRunRecord(
            runId: runID, userId: connection.userID, sessionId: connection.sessionID, status: .queued,
            workflow: definition,
            inputs: inputs, createdAt: now, updatedAt: now)
        guard try await store.create(record) else { throw CommandError(.internalError, "run id collision; try again") }
        guard
            try await store.claim(
                workflowID: workflowID, session: connection.sessionID, user: connection.userID, runID: runID,
                replacing: previous)
        else {
            // Another socket of this session started the same id a moment ago: this run never starts.
            record.status = .failed
            record.error = "another run took workflow id \(workflowID)"
            try await store.update(record)
            throw ExecutionError(
                code: "duplicate_workflow_id", message: "workflow \(workflowID) was just started in this session",
                workflowID: workflowID)
        }
        // Follow the run's channel before it is queued, so not one of its events is missed, but hold its
        // events until workflow_execution_started is out: a runner may start the run (and a client see
        // its first events) before the broker's acknowledgement of the request reaches this gateway.
        connection.holdEvents(of: runID)
        defer { connection.releaseEvents(of: runID) }
        _ = try await connection.follow(runID, workflowID: workflowID, since: nil, hub: hub, history: history)
        let payload = WorkflowRunRequested(
            runId: runID, userId: connection.userID, sessionId: connection.sessionID, workflow: definition,
            inputs: inputs)
        try await context.publish(context.envelope(payload, routingKey: runID), to: Topics.workflowCommands)
        connection.send(
            BlueVFrame.ExecutionStarted(
                workflow_id: workflowID, run_id: runID, session_id: connection.sessionID,
                timestamp: WorkflowTime.iso(now),
                request_id: requestID))
        connection.recordSuccess()
    }

    private func validationError(_ problems: [ValidationIssue], workflowID: String?, requestID: String?)
        -> BlueVFrame.ValidationError
    {
        BlueVFrame.ValidationError(
            errors: problems.map(\.json), workflow_id: workflowID, request_id: requestID,
            timestamp: WorkflowTime.iso(Clock.epochMilliseconds()))
    }

    /// The run a message names: the client's workflow id in this session, else (for tools that kept
    /// it) a run id of the user's.
    private func namedRun(_ message: [String: JSONValue], connection: WorkflowConnection) async throws -> (
        record: WorkflowRunRecord, workflowID: String
    ) {
        guard let name = message["workflow_id"]?.stringValue, CommandHandler.isValidID(name) else {
            throw CommandError(
                .invalidArgument, "workflow_id must be the workflow's id (workflow.id of execute_workflow)")
        }
        if let runID = try await store.run(workflowID: name, session: connection.sessionID, user: connection.userID),
            let record = try await store.record(runID)
        {
            return (record, name)
        }
        guard let record = try await store.record(name), record.userId == connection.userID else {
            // Another user's run is reported as missing: ids are not to be probed.
            throw CommandError(.invalidArgument, "no workflow \(name) in this session")
        }
        return (record, record.workflow.id ?? record.runId)
    }

    private func control(_ message: [String: JSONValue], connection: WorkflowConnection, requestID: String?)
        async throws
    {
        let actionName = message["action"]?.stringValue ?? ""
        guard WorkflowControlAction(rawValue: actionName) != nil else {
            throw CommandError(.invalidArgument, "unknown action '\(actionName)' (pause, resume or stop)")
        }
        let (record, workflowID) = try await namedRun(message, connection: connection)
        let requestID = requestID ?? UUID().uuidString.lowercased()
        let now = WorkflowTime.iso(Clock.epochMilliseconds())
        // The seed's answer at once; what the control did follows as workflow_control_result.
        connection.send(
            BlueVFrame.ControlResponse(
                workflow_id: workflowID, action: actionName, run_id: record.runId, request_id: requestID, timestamp: now
            ))
        if record.status.isTerminal {
            // Nothing to ask the runner: the run is over, and that is the outcome.
            return connection.send(
                BlueVFrame.ControlResult(
                    workflow_id: workflowID, action: actionName, run_id: record.runId, request_id: requestID,
                    success: false,
                    status: record.status.rawValue,
                    error: .init(code: "not_running", message: "the run is \(record.status.rawValue)"),
                    timestamp: now))
        }
        // The runner's answer comes on the run's channel: follow it if this connection does not yet.
        if !connection.isFollowing(record.runId) {
            _ = try await connection.follow(
                record.runId, workflowID: workflowID, since: nil, hub: hub, history: history)
        }
        let payload = WorkflowControlRequested(
            runId: record.runId, userId: connection.userID, action: actionName, requestId: requestID)
        try await context.publish(context.envelope(payload, routingKey: record.runId), to: Topics.workflowCommands)
        connection.recordSuccess()
    }

    private func provideInput(_ message: [String: JSONValue], connection: WorkflowConnection, requestID: String?)
        async throws
    {
        let (record, workflowID) = try await namedRun(message, connection: connection)
        guard let node = message["node_id"]?.stringValue, let answer = message["answer"] else {
            throw CommandError(.invalidArgument, "provide_input needs node_id and answer")
        }
        if !connection.isFollowing(record.runId) {
            _ = try await connection.follow(
                record.runId, workflowID: workflowID, since: nil, hub: hub, history: history)
        }
        try await submitInput(
            record, node: node, answer: answer, userID: connection.userID,
            requestID: requestID ?? UUID().uuidString.lowercased())
        connection.recordSuccess()
    }

    private func submitInput(
        _ record: WorkflowRunRecord, node: String, answer: JSONValue, userID: String, requestID: String
    ) async throws {
        let payload = WorkflowInputProvided(
            runId: record.runId, userId: userID, nodeId: node, answer: answer, requestId: requestID)
        try await context.publish(context.envelope(payload, routingKey: record.runId), to: Topics.workflowCommands)
    }

    /// `event_types` narrows what is delivered; with `workflow_id` (and `offset`/`epoch` of the last event
    /// seen, or offset 0 for everything) it (re)attaches to a run and replays what was missed.
    private func subscribe(_ message: [String: JSONValue], connection: WorkflowConnection, requestID: String?)
        async throws
    {
        let types = try eventTypes(message)
        guard message["workflow_id"] != nil else {
            connection.subscribe(types)
            connection.send(
                BlueVFrame.Subscription(
                    type: WorkflowFrame.subscriptionConfirmed, subscriptions: connection.subscriptions,
                    request_id: requestID))
            await directory.publish(connection.entry(gateway: directory.gatewayID))
            return connection.recordSuccess()
        }
        let (record, workflowID) = try await namedRun(message, connection: connection)
        var since: StreamPosition?
        if let offset = message["offset"], offset != .null {
            guard let value = offset.intValue, value >= 0 else {
                throw CommandError(.invalidArgument, "offset must be an integer ≥ 0")
            }
            if let epoch = message["epoch"]?.stringValue, !epoch.isEmpty {
                since = StreamPosition(epoch: epoch, offset: Int64(value))
            } else if value == 0 {
                // From the start: the channel's own epoch.
                since = try await history.read(.workflow(record.runId), after: nil).top.map {
                    StreamPosition(epoch: $0.epoch, offset: 0)
                }
            } else {
                throw CommandError(.invalidArgument, "a resume position is offset with epoch (or offset 0 alone)")
            }
        }
        connection.subscribe(types)
        var confirmation = BlueVFrame.Subscription(
            type: WorkflowFrame.subscriptionConfirmed, subscriptions: connection.subscriptions, request_id: requestID)
        confirmation.workflow_id = workflowID
        confirmation.run_id = record.runId
        confirmation.status = record.status.rawValue
        _ = try await connection.follow(record.runId, workflowID: workflowID, since: since, hub: hub, history: history)
        {
            recovered, position in
            var frame = confirmation
            frame.recovered = recovered
            frame.offset = position?.offset
            frame.epoch = position?.epoch
            connection.send(frame)
        }
        await directory.publish(connection.entry(gateway: directory.gatewayID))
        connection.recordSuccess()
    }

    private func unsubscribe(_ message: [String: JSONValue], connection: WorkflowConnection, requestID: String?)
        async throws
    {
        let types = try eventTypes(message)
        if message["workflow_id"] != nil {
            let (record, _) = try await namedRun(message, connection: connection)
            await connection.unfollow(record.runId)
        }
        connection.unsubscribe(types)
        connection.send(
            BlueVFrame.Subscription(
                type: WorkflowFrame.subscriptionUpdated, subscriptions: connection.subscriptions, request_id: requestID)
        )
        await directory.publish(connection.entry(gateway: directory.gatewayID))
        connection.recordSuccess()
    }

    /// Any names are kept (the seed keeps what it is given); only the ones Switchboard knows narrow delivery.
    private func eventTypes(_ message: [String: JSONValue]) throws -> [String] {
        guard let value = message["event_types"], value != .null else { return [] }
        guard let array = value.arrayValue, let names = Optional(array.compactMap(\.stringValue)),
            names.count == array.count,
            names.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 128 })
        else { throw CommandError(.invalidArgument, "event_types must be an array of names (1-128 characters)") }
        return names
    }

    static func isValidSessionID(_ id: String) -> Bool { CommandHandler.isValidID(id) }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            "missing \((context.codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: "."))"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
        default:
            "\(error)"
        }
    }

    // MARK: REST

    private func addHistoryRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/api/v1/workflows/runs/:id") { request, requestContext -> Response in
            let claims = try await Gateway.authenticate(request, authority: authority)
            guard let runID = requestContext.parameters.get("id"), CommandHandler.isValidID(runID),
                let record = try await store.record(runID), record.userId == claims.userID
            else { throw HTTPError(.notFound, message: "no such workflow run") }
            return try Self.json(WorkflowRunBody(record, checkpoints: try await store.checkpoints(record.runId)))
        }
        router.get("/api/v1/workflows/runs") { request, _ -> Response in
            let claims = try await Gateway.authenticate(request, authority: authority)
            let limit = request.uri.queryParameters["limit"].flatMap { Int(String($0)) } ?? 20
            let offset = request.uri.queryParameters["offset"].flatMap { Int(String($0)) } ?? 0
            guard (1...100).contains(limit), offset >= 0 else {
                throw HTTPError(.badRequest, message: "limit is 1-100 and offset ≥ 0")
            }
            let page = try await store.runs(ofUser: claims.userID, offset: offset, limit: limit)
            var runs: [WorkflowRunBody] = []
            for id in page.ids {
                if let record = try await store.record(id) { runs.append(WorkflowRunBody(record)) }
            }
            return try Self.json(
                WorkflowRunPage(
                    runs: runs, total: page.total, offset: offset, limit: limit,
                    hasMore: offset + page.ids.count < page.total))
        }
        // The REST way to answer a human_input node; the outcome comes on the run's channel.
        router.post("/api/v1/workflows/runs/:id/input") { request, requestContext -> Response in
            let claims = try await Gateway.authenticate(request, authority: authority)
            guard let runID = requestContext.parameters.get("id"), CommandHandler.isValidID(runID),
                let record = try await store.record(runID), record.userId == claims.userID
            else { throw HTTPError(.notFound, message: "no such workflow run") }
            struct Body: Decodable {
                var node_id: String
                var answer: JSONValue
            }
            let body: Body
            do {
                body = try await request.decode(as: Body.self, context: requestContext)
            } catch {
                throw HTTPError(.badRequest, message: #"the body is JSON {"node_id": "…", "answer": …}"#)
            }
            guard !record.status.isTerminal else {
                throw HTTPError(.conflict, message: "the run is \(record.status.rawValue)")
            }
            let requestID = UUID().uuidString.lowercased()
            try await submitInput(
                record, node: body.node_id, answer: body.answer, userID: claims.userID, requestID: requestID)
            return try Self.json(
                WorkflowInputSubmitted(workflowId: record.workflow.id ?? runID, runId: runID, requestId: requestID),
                status: .accepted)
        }
    }

    static func json(_ body: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        try .json(JSONValueEncoder().encode(body), status: status)
    }
}

/// One `/ws/{session_id}` connection: the session (its outbound queue, its place in the drain at
/// shutdown), the runs it follows (under the client's workflow ids) and the event types it asked for.
final class WorkflowConnection: FrameSink, Sendable {
    let session: ClientSession
    let sessionID: String
    let clientInfo: [String: JSONValue]
    let connectedAt = Clock.epochMilliseconds()
    private let feeds = FollowedFeeds()
    private let subscribed = Mutex<Set<String>>([])
    /// Run id → the client's workflow id, for every run followed: frames name runs the client's way.
    private let workflowIDs = Mutex<[String: String]>([:])
    private let consecutiveErrors = Atomic<Int>(0)
    private let lastHeartbeat: Atomic<Int64>
    /// Run id → its events held back until the run's workflow_execution_started is out (`holdEvents`).
    private let held = Mutex<[String: [HeldFrame]]>([:])

    private struct HeldFrame: Sendable {
        var text: String
        var ephemeral: Bool
        var createdAt: Int64
    }

    init(session: ClientSession, sessionID: String, clientInfo: [String: JSONValue] = [:]) {
        self.session = session
        self.sessionID = sessionID
        self.clientInfo = clientInfo
        lastHeartbeat = Atomic(connectedAt)
    }

    var userID: String { session.userID }
    var subscriptions: [String] { subscribed.withLock { $0.sorted() } }

    func send(_ frame: some Encodable) {
        guard let data = try? GatewayJSON.encoder.encode(frame) else { return }
        session.outbound.enqueue(String(decoding: data, as: UTF8.self))
    }

    /// Holds the run's events from now until `releaseEvents(of:)`, so the answer to its execute_workflow
    /// (sent in between) comes before them, as seed 003's clients expect.
    func holdEvents(of runID: String) {
        held.withLock { $0[runID] = $0[runID] ?? [] }
    }

    /// Sends what was held, in order, and lets the run's events through again.
    func releaseEvents(of runID: String) {
        // Under the lock: an event delivered meanwhile waits, and so keeps its place after these.
        held.withLock { held in
            for frame in held.removeValue(forKey: runID) ?? [] { _ = enqueue(frame) }
        }
    }

    /// Queues a run event for the socket, counted as delivered when the queue takes it.
    private func enqueue(_ frame: HeldFrame) -> Bool {
        let accepted = session.outbound.enqueue(frame.text, ephemeral: frame.ephemeral, createdAt: frame.createdAt)
        if accepted { GatewayMetrics.delivered.increment() }
        return accepted
    }

    func recordError() -> Int { consecutiveErrors.add(1, ordering: .relaxed).newValue }
    func recordSuccess() { consecutiveErrors.store(0, ordering: .relaxed) }
    func recordHeartbeat() { lastHeartbeat.store(Clock.epochMilliseconds(), ordering: .relaxed) }

    func subscribe(_ types: [String]) { subscribed.withLock { $0.formUnion(types) } }
    func unsubscribe(_ types: [String]) { subscribed.withLock { $0.subtract(types) } }

    /// This connection's line in `GET /api/connections`.
    func entry(gateway: String) -> BlueVDirectory.Entry {
        BlueVDirectory.Entry(
            session_id: sessionID, connected_at: WorkflowTime.iso(connectedAt),
            last_heartbeat: WorkflowTime.iso(lastHeartbeat.load(ordering: .relaxed)), subscriptions: subscriptions,
            client_info: clientInfo, user_id: userID, connection_id: session.id, gateway: gateway)
    }

    /// Whether a frame type passes the subscriptions. Names Switchboard does not know narrow nothing, and
    /// a run's ends and the answers to this client's requests always pass.
    func wants(_ frameType: String) -> Bool {
        Self.passes(frameType, subscriptions: subscribed.withLock { $0 })
    }

    static func passes(_ frameType: String, subscriptions: Set<String>) -> Bool {
        if WorkflowFrame.alwaysDelivered.contains(frameType) { return true }
        let known = subscriptions.filter {
            WorkflowFrame.eventGroups[$0] != nil || WorkflowFrame.subscribable.contains($0)
        }
        return known.isEmpty || known.contains(frameType)
            || known.contains { WorkflowFrame.eventGroups[$0]?.contains(frameType) == true }
    }

    // MARK: FrameSink

    /// A stored event `{id, type, data, …}` becomes the seed's flat frame `{type, …data, offset, epoch,
    /// event_id}` naming the run by the client's workflow id; a broadcast is the posted JSON as it is.
    func deliver(_ message: ChannelWire.Message) -> Bool {
        guard let stored = try? JSONDecoder().decode(JSONValue.self, from: Data(message.frameJSON.utf8)) else {
            return true
        }
        var frame = stored["data"]?.objectValue ?? [:]
        if message.frameType == FrameType.userNotification {
            guard let posted = frame[UserNotification.broadcastField], let text = Self.render(posted) else {
                return true
            }
            return session.outbound.enqueue(text, ephemeral: false, createdAt: message.createdAt)
        }
        // Anything else of the system channel is for the chat sockets.
        guard let runID = frame["workflow_id"]?.stringValue, let workflowID = workflowIDs.withLock({ $0[runID] }),
            wants(message.frameType)
        else { return true }
        frame["workflow_id"] = .string(workflowID)
        frame["run_id"] = .string(runID)
        frame["type"] = .string(message.frameType)
        if let id = stored["id"] { frame["event_id"] = id }
        if !message.isEphemeral {
            frame["offset"] = .number(Double(message.offset))
            frame["epoch"] = .string(message.epoch)
        }
        guard let text = Self.render(.object(frame)) else { return true }
        let event = HeldFrame(text: text, ephemeral: message.isEphemeral, createdAt: message.createdAt)
        let heldBack = held.withLock { held in
            guard held[runID] != nil else { return false }
            held[runID]?.append(event)
            return true
        }
        return heldBack || enqueue(event)
    }

    static func render(_ value: JSONValue) -> String? {
        (try? GatewayJSON.encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) }
    }

    func insufficientState(_ reason: String) {
        session.outbound.close(.insufficientState, reason: "insufficient state: re-subscribe with your last offset")
    }

    // MARK: Runs

    func isFollowing(_ runID: String) -> Bool { feeds.contains(.workflow(runID)) }

    func follow(
        _ runID: String, workflowID: String, since: StreamPosition?, hub: DeliveryHub, history: ChannelHistory,
        announce: (_ recovered: Bool, _ position: StreamPosition?) -> Void = { _, _ in }
    ) async throws -> ChannelFeed.Opened {
        workflowIDs.withLock { $0[runID] = workflowID }
        let opened = try await ChannelFeed.open(
            .workflow(runID), since: since, hub: hub, history: history, sink: self, loop: session.loop,
            announce: announce)
        await feeds.replace(with: opened.feed)
        return opened
    }

    func followSystem(hub: DeliveryHub, history: ChannelHistory) async throws {
        let opened = try await ChannelFeed.open(
            .system, since: nil, hub: hub, history: history, sink: self, loop: session.loop)
        await feeds.replace(with: opened.feed)
    }

    func unfollow(_ runID: String) async {
        await feeds.remove(.workflow(runID))
    }

    func unfollowAll() async {
        await feeds.removeAll()
    }
}

/// The frames the gateway itself writes on `/ws/{session_id}` (the runners write the run's own).
/// Field names are the seed's, so they are snake_case here; optional fields are left out when nil.
enum BlueVFrame {
    struct SessionRun: Encodable {
        var workflow_id: String
        var run_id: String
        var status: String
    }

    struct ConnectionEstablished: Encodable {
        let type = WorkflowFrame.connectionEstablished
        var session_id: String
        var timestamp: String
        var user_id: String
        var workflows: [SessionRun]
    }

    struct Heartbeat: Encodable {
        let type = WorkflowFrame.heartbeat
        var timestamp: String
    }

    struct ExecutionStarted: Encodable {
        let type = WorkflowFrame.executionStarted
        var workflow_id: String
        var run_id: String
        var session_id: String
        var status = "queued"
        var timestamp: String
        var request_id: String?
    }

    struct ExecutionError: Encodable {
        let type = WorkflowFrame.executionError
        var error: String
        var code: String
        var workflow_id: String?
        var request_id: String?
        var timestamp: String
    }

    struct ValidationError: Encodable {
        let type = WorkflowFrame.validationError
        var errors: [JSONValue]
        var workflow_id: String?
        var request_id: String?
        var timestamp: String
    }

    struct ControlResponse: Encodable {
        let type = WorkflowFrame.controlResponse
        var workflow_id: String
        var action: String
        var status = "acknowledged"
        var run_id: String
        var request_id: String
        var timestamp: String
    }

    struct ControlResult: Encodable {
        struct Problem: Encodable {
            var code: String
            var message: String
        }
        let type = WorkflowFrame.controlResult
        var workflow_id: String
        var action: String
        var run_id: String
        var request_id: String
        var success: Bool
        var status: String
        var error: Problem?
        var timestamp: String
    }

    struct Subscription: Encodable {
        var type: String
        var subscriptions: [String]
        var request_id: String?
        var workflow_id: String?
        var run_id: String?
        var status: String?
        var recovered: Bool?
        var offset: Int64?
        var epoch: String?
    }

    struct Failure: Encodable {
        let type = WorkflowFrame.error
        var message: String
        var code: String
        var request_id: String?
        var timestamp: String
    }
}
