import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import Metrics
import NIOCore
import NIOWebSocket
import Synchronization
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardStore
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
    let settings: GatewaySettings
    /// Where finished runs are kept once Redis lets them go.
    let archive: HistoryStore

    var store: WorkflowRunStore { WorkflowRunStore(redis: context.redis, archive: archive) }

    func addRoutes(to router: Router<GatewayRequestContext>) {
        addHistoryRoutes(to: router)
    }

    // MARK: The socket

    var pathPattern: String { "/ws/{session_id}" }

    func admit(_ request: UpgradeRequest) async throws -> any WebSocketDoorSession {
        let claims = try await admission.authenticate(token: request.bearerToken)
        guard let sessionID = request.parameters["session_id"], Self.isValidSessionID(sessionID) else {
            throw HTTPError(.badRequest, message: "a session id is 1-128 letters, digits, '-', '_' or '.'")
        }
        try admission.checkAcceptingConnections()
        return StreamingDoorSession(expiresAt: claims.expiresAt) { messages, socket in
            await serve(claims: claims, sessionID: sessionID, messages: messages, socket: socket)
        }
    }

    private func serve(
        claims: SwitchboardClaims, sessionID: String, messages: AsyncStream<WebSocketMessage>, socket: WebSocketOutbound
    ) async {
        let session = ClientSession(userID: claims.userID, socket: socket)
        do {
            try await admission.admit(session)
        } catch {
            return socket.close(error.closeCode, reason: error.message)
        }
        let connection = WorkflowConnection(session: session, sessionID: sessionID)
        await greet(connection)
        // The seed's application-level heartbeat, on top of WebSocket pings: a timer on the socket's loop.
        socket.every(TimeAmount(settings.pingInterval)) {
            connection.send(["type": .string(WorkflowFrame.heartbeat), "timestamp": .string(WorkflowTime.iso(Clock.epochMilliseconds()))])
        }
        for await message in messages {
            await handle(message, connection: connection)
        }
        await admission.release(session)
        await connection.unfollowAll()
    }

    /// connection_established, with the runs of this session that are still going (to re-attach to).
    private func greet(_ connection: WorkflowConnection) async {
        var workflows: [JSONValue] = []
        if let ids = try? await store.runs(ofSession: connection.sessionID, user: connection.userID) {
            for id in ids {
                guard let record = try? await store.record(id) else { continue }
                workflows.append(["workflow_id": .string(id), "status": .string(record.status.rawValue)])
            }
        }
        connection.send([
            "type": .string(WorkflowFrame.connectionEstablished), "session_id": .string(connection.sessionID),
            "user_id": .string(connection.userID), "workflows": .array(workflows),
            "timestamp": .string(WorkflowTime.iso(Clock.epochMilliseconds())),
        ])
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
                throw CommandError(.rateLimited, "more than \(Int(settings.commandsPerSecond)) requests per second; slow down")
            }
            switch type {
            case "execute_workflow": try await execute(object, connection: connection, requestID: requestID)
            case "control_workflow": try await control(object, connection: connection, requestID: requestID)
            case "provide_input": try await provideInput(object, connection: connection, requestID: requestID)
            case "subscribe": try await subscribe(object, connection: connection, requestID: requestID)
            case "unsubscribe": try await unsubscribe(object, connection: connection, requestID: requestID)
            case "heartbeat_response": connection.recordHeartbeat()
            default:
                throw CommandError(
                    .unknownType,
                    "unknown message type \(type) (known: execute_workflow, control_workflow, provide_input, subscribe, unsubscribe, heartbeat_response)")
            }
        } catch let error as CommandError {
            fail(connection, code: error.code, error.message, requestID: requestID)
        } catch {
            context.logger.warning("workflow command failed", metadata: ["error": "\(error)"])
            fail(connection, code: .unavailable, "the command could not be carried out; try again", requestID: requestID)
        }
    }

    private func fail(_ connection: WorkflowConnection, code: ErrorCode, _ message: String, requestID: String?) {
        var frame: [String: JSONValue] = [
            "type": .string(WorkflowFrame.error), "code": .string(code.rawValue), "message": .string(message),
            "timestamp": .string(WorkflowTime.iso(Clock.epochMilliseconds())),
        ]
        if let requestID { frame["request_id"] = .string(requestID) }
        connection.send(frame)
        if connection.recordError() >= settings.maxConsecutiveErrors {
            connection.session.outbound.close(.badRequest, reason: "too many invalid messages")
        }
    }

    private func execute(_ message: [String: JSONValue], connection: WorkflowConnection, requestID: String?) async throws {
        guard let workflowJSON = message["workflow"], workflowJSON.objectValue != nil else {
            throw CommandError(.invalidArgument, "execute_workflow needs a workflow object {id?, nodes, connections}")
        }
        let definition: WorkflowDefinition
        do {
            definition = try JSONDecoder().decode(WorkflowDefinition.self, from: try JSONEncoder().encode(workflowJSON))
        } catch {
            return connection.send(
                validationError(
                    [ValidationIssue(.malformedDefinition, "the workflow is not a valid definition: \(Self.describe(error))")],
                    workflowID: workflowJSON["id"]?.stringValue, requestID: requestID))
        }
        let problems = WorkflowValidator.problems(of: definition)
        guard problems.isEmpty else {
            return connection.send(validationError(problems, workflowID: definition.id, requestID: requestID))
        }
        let inputs = message["inputs"]?.objectValue ?? [:]
        let runID = UUID().uuidString.lowercased()
        let now = Clock.epochMilliseconds()
        let record = WorkflowRunRecord(
            runId: runID, userId: connection.userID, sessionId: connection.sessionID, status: .queued, workflow: definition,
            inputs: inputs, createdAt: now, updatedAt: now)
        guard try await store.create(record) else { throw CommandError(.internalError, "run id collision; try again") }
        // Follow the run's channel before it is queued, so not one of its events is missed.
        _ = try await connection.follow(runID, since: nil, hub: hub, history: history)
        var started: [String: JSONValue] = [
            "type": .string(WorkflowFrame.executionStarted), "workflow_id": .string(runID), "session_id": .string(connection.sessionID),
            "status": "queued", "timestamp": .string(WorkflowTime.iso(now)),
        ]
        if let id = definition.id { started["definition_id"] = .string(id) }
        if let requestID { started["request_id"] = .string(requestID) }
        let payload = WorkflowRunRequested(
            runId: runID, userId: connection.userID, sessionId: connection.sessionID, workflow: definition, inputs: inputs)
        try await context.publish(context.envelope(payload, routingKey: runID), to: Topics.workflowCommands)
        connection.send(started)
        connection.recordSuccess()
    }

    private func validationError(_ problems: [ValidationIssue], workflowID: String?, requestID: String?) -> [String: JSONValue] {
        var frame: [String: JSONValue] = [
            "type": .string(WorkflowFrame.validationError), "errors": .array(problems.map(\.json)),
            "timestamp": .string(WorkflowTime.iso(Clock.epochMilliseconds())),
        ]
        if let workflowID { frame["definition_id"] = .string(workflowID) }
        if let requestID { frame["request_id"] = .string(requestID) }
        return frame
    }

    /// The run a message names, if it is the user's.
    private func ownedRun(_ message: [String: JSONValue], userID: String) async throws -> WorkflowRunRecord {
        guard let runID = message["workflow_id"]?.stringValue, CommandHandler.isValidID(runID) else {
            throw CommandError(.invalidArgument, "workflow_id must be the id from workflow_execution_started")
        }
        guard let record = try await store.record(runID), record.userId == userID else {
            // Another user's run is reported as missing: ids are not to be probed.
            throw CommandError(.invalidArgument, "no workflow run \(runID)")
        }
        return record
    }

    private func control(_ message: [String: JSONValue], connection: WorkflowConnection, requestID: String?) async throws {
        let actionName = message["action"]?.stringValue ?? ""
        guard WorkflowControlAction(rawValue: actionName) != nil else {
            throw CommandError(.invalidArgument, "unknown action '\(actionName)' (pause, resume or stop)")
        }
        let record = try await ownedRun(message, userID: connection.userID)
        let requestID = requestID ?? UUID().uuidString.lowercased()
        if record.status.isTerminal {
            // Nothing to ask the runner: the run is over, and that is the outcome.
            return connection.send([
                "type": .string(WorkflowFrame.controlResponse), "workflow_id": .string(record.runId), "action": .string(actionName),
                "request_id": .string(requestID), "success": false, "status": .string(record.status.rawValue),
                "error": ["code": "not_running", "message": .string("the run is \(record.status.rawValue)")],
                "timestamp": .string(WorkflowTime.iso(Clock.epochMilliseconds())),
            ])
        }
        // The runner's answer comes on the run's channel: follow it if this connection does not yet.
        if !connection.isFollowing(record.runId) {
            _ = try await connection.follow(record.runId, since: nil, hub: hub, history: history)
        }
        let payload = WorkflowControlRequested(runId: record.runId, userId: connection.userID, action: actionName, requestId: requestID)
        try await context.publish(context.envelope(payload, routingKey: record.runId), to: Topics.workflowCommands)
        connection.recordSuccess()
    }

    private func provideInput(_ message: [String: JSONValue], connection: WorkflowConnection, requestID: String?) async throws {
        let record = try await ownedRun(message, userID: connection.userID)
        guard let node = message["node_id"]?.stringValue, let answer = message["answer"] else {
            throw CommandError(.invalidArgument, "provide_input needs node_id and answer")
        }
        if !connection.isFollowing(record.runId) {
            _ = try await connection.follow(record.runId, since: nil, hub: hub, history: history)
        }
        try await submitInput(record, node: node, answer: answer, userID: connection.userID, requestID: requestID ?? UUID().uuidString.lowercased())
        connection.recordSuccess()
    }

    private func submitInput(_ record: WorkflowRunRecord, node: String, answer: JSONValue, userID: String, requestID: String) async throws {
        let payload = WorkflowInputProvided(runId: record.runId, userId: userID, nodeId: node, answer: answer, requestId: requestID)
        try await context.publish(context.envelope(payload, routingKey: record.runId), to: Topics.workflowCommands)
    }

    /// `event_types` narrows what is delivered; with `workflow_id` (and `offset`/`epoch` of the last event
    /// seen, or offset 0 for everything) it (re)attaches to a run and replays what was missed.
    private func subscribe(_ message: [String: JSONValue], connection: WorkflowConnection, requestID: String?) async throws {
        let types = try eventTypes(message)
        var frame: [String: JSONValue] = ["type": .string(WorkflowFrame.subscriptionConfirmed)]
        if let requestID { frame["request_id"] = .string(requestID) }
        guard message["workflow_id"] != nil else {
            connection.subscribe(types)
            frame["subscriptions"] = .array(connection.subscriptions.map { .string($0) })
            connection.send(frame)
            return connection.recordSuccess()
        }
        let record = try await ownedRun(message, userID: connection.userID)
        var since: StreamPosition?
        if let offset = message["offset"], offset != .null {
            guard let value = offset.intValue, value >= 0 else { throw CommandError(.invalidArgument, "offset must be an integer ≥ 0") }
            if let epoch = message["epoch"]?.stringValue, !epoch.isEmpty {
                since = StreamPosition(epoch: epoch, offset: Int64(value))
            } else if value == 0 {
                // From the start: the channel's own epoch.
                since = try await history.read(.workflow(record.runId), after: nil).top.map { StreamPosition(epoch: $0.epoch, offset: 0) }
            } else {
                throw CommandError(.invalidArgument, "a resume position is offset with epoch (or offset 0 alone)")
            }
        }
        connection.subscribe(types)
        frame["subscriptions"] = .array(connection.subscriptions.map { .string($0) })
        frame["workflow_id"] = .string(record.runId)
        frame["status"] = .string(record.status.rawValue)
        let confirmation = frame
        _ = try await connection.follow(record.runId, since: since, hub: hub, history: history) { recovered, position in
            var frame = confirmation
            frame["recovered"] = .bool(recovered)
            if let position {
                frame["offset"] = .number(Double(position.offset))
                frame["epoch"] = .string(position.epoch)
            }
            connection.send(frame)
        }
        connection.recordSuccess()
    }

    private func unsubscribe(_ message: [String: JSONValue], connection: WorkflowConnection, requestID: String?) async throws {
        let types = try eventTypes(message)
        if message["workflow_id"] != nil {
            let record = try await ownedRun(message, userID: connection.userID)
            await connection.unfollow(record.runId)
        }
        connection.unsubscribe(types)
        var frame: [String: JSONValue] = [
            "type": .string(WorkflowFrame.subscriptionUpdated), "subscriptions": .array(connection.subscriptions.map { .string($0) }),
        ]
        if let requestID { frame["request_id"] = .string(requestID) }
        connection.send(frame)
        connection.recordSuccess()
    }

    private func eventTypes(_ message: [String: JSONValue]) throws -> [String] {
        guard let value = message["event_types"], value != .null else { return [] }
        guard let array = value.arrayValue else { throw CommandError(.invalidArgument, "event_types must be an array of strings") }
        let names = array.compactMap(\.stringValue)
        let unknown = names.filter { WorkflowFrame.eventGroups[$0] == nil && !WorkflowFrame.subscribable.contains($0) }
        guard names.count == array.count, unknown.isEmpty else {
            let known = (WorkflowFrame.eventGroups.keys.sorted() + WorkflowFrame.subscribable.sorted()).joined(separator: ", ")
            throw CommandError(.invalidArgument, "unknown event types \(unknown) (known: \(known))")
        }
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
            return try Self.json(try await runJSON(record, withNodes: true))
        }
        router.get("/api/v1/workflows/runs") { request, _ -> Response in
            let claims = try await Gateway.authenticate(request, authority: authority)
            let limit = request.uri.queryParameters["limit"].flatMap { Int(String($0)) } ?? 20
            let offset = request.uri.queryParameters["offset"].flatMap { Int(String($0)) } ?? 0
            guard (1...100).contains(limit), offset >= 0 else {
                throw HTTPError(.badRequest, message: "limit is 1-100 and offset ≥ 0")
            }
            let page = try await store.runs(ofUser: claims.userID, offset: offset, limit: limit)
            var runs: [JSONValue] = []
            for id in page.ids {
                if let record = try await store.record(id) { runs.append(try await runJSON(record, withNodes: false)) }
            }
            return try Self.json([
                "runs": .array(runs), "total": .number(Double(page.total)), "offset": .number(Double(offset)),
                "limit": .number(Double(limit)), "has_more": .bool(offset + page.ids.count < page.total),
            ])
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
            guard !record.status.isTerminal else { throw HTTPError(.conflict, message: "the run is \(record.status.rawValue)") }
            let requestID = UUID().uuidString.lowercased()
            try await submitInput(record, node: body.node_id, answer: body.answer, userID: claims.userID, requestID: requestID)
            return try Self.json(["workflow_id": .string(runID), "request_id": .string(requestID), "status": "submitted"], status: .accepted)
        }
    }

    private func runJSON(_ record: WorkflowRunRecord, withNodes: Bool) async throws -> JSONValue {
        var object: [String: JSONValue] = [
            "workflow_id": .string(record.runId), "status": .string(record.status.rawValue), "session_id": .string(record.sessionId),
            "created_at": .string(WorkflowTime.iso(record.createdAt)), "updated_at": .string(WorkflowTime.iso(record.updatedAt)),
            "node_count": .number(Double(record.workflow.nodes.count)),
        ]
        if let id = record.workflow.id { object["definition_id"] = .string(id) }
        if let error = record.error { object["error"] = .string(error) }
        if let results = record.results { object["results"] = .object(results) }
        if withNodes {
            object["workflow"] = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(record.workflow))
            var nodes: [String: JSONValue] = [:]
            for (id, checkpoint) in try await store.checkpoints(record.runId) {
                var node: [String: JSONValue] = ["status": .string(checkpoint.status.rawValue)]
                if let outputs = checkpoint.outputs { node["outputs"] = .object(outputs) }
                if let error = checkpoint.error { node["error"] = .string(error) }
                if let started = checkpoint.startedAt, let finished = checkpoint.finishedAt {
                    node["elapsed_ms"] = .number(Double(finished - started))
                }
                nodes[id] = .object(node)
            }
            object["nodes"] = .object(nodes)
        }
        return .object(object)
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Response(
            status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}

/// One `/ws/{session_id}` connection: the session (its outbound queue, its place in the drain at
/// shutdown), the runs it follows and the event types it asked for.
final class WorkflowConnection: FrameSink, Sendable {
    let session: ClientSession
    let sessionID: String
    private let feeds = FollowedFeeds()
    private let subscribed = Mutex<Set<String>>([])
    private let consecutiveErrors = Atomic<Int>(0)
    private let lastHeartbeat = Atomic<Int64>(0)

    init(session: ClientSession, sessionID: String) {
        self.session = session
        self.sessionID = sessionID
    }

    var userID: String { session.userID }
    var subscriptions: [String] { subscribed.withLock { $0.sorted() } }

    func send(_ frame: [String: JSONValue]) {
        guard let text = Self.render(frame) else { return }
        session.outbound.enqueue(text)
    }

    static func render(_ frame: [String: JSONValue]) -> String? {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(JSONValue.object(frame))).map { String(decoding: $0, as: UTF8.self) }
    }

    func recordError() -> Int { consecutiveErrors.add(1, ordering: .relaxed).newValue }
    func recordSuccess() { consecutiveErrors.store(0, ordering: .relaxed) }
    func recordHeartbeat() { lastHeartbeat.store(Clock.epochMilliseconds(), ordering: .relaxed) }

    func subscribe(_ types: [String]) { subscribed.withLock { $0.formUnion(types) } }
    func unsubscribe(_ types: [String]) { subscribed.withLock { $0.subtract(types) } }

    /// Whether a frame type passes the subscriptions (none: everything passes). Answers to this client's
    /// own requests always pass.
    func wants(_ frameType: String) -> Bool {
        if frameType == WorkflowFrame.controlResponse || frameType == WorkflowFrame.inputResponse { return true }
        return subscribed.withLock { subscribed in
            subscribed.isEmpty || subscribed.contains(frameType)
                || subscribed.contains { WorkflowFrame.eventGroups[$0]?.contains(frameType) == true }
        }
    }

    // MARK: FrameSink

    /// A stored event `{id, type, data, …}` becomes the seed's flat frame `{type, …data, offset, epoch, event_id}`.
    func deliver(_ message: ChannelWire.Message) -> Bool {
        guard wants(message.frameType) else { return true }
        guard let stored = try? JSONDecoder().decode(JSONValue.self, from: Data(message.frameJSON.utf8)) else { return true }
        var frame = stored["data"]?.objectValue ?? [:]
        frame["type"] = .string(message.frameType)
        if let id = stored["id"] { frame["event_id"] = id }
        if !message.isEphemeral {
            frame["offset"] = .number(Double(message.offset))
            frame["epoch"] = .string(message.epoch)
        }
        guard let text = Self.render(frame) else { return true }
        let accepted = session.outbound.enqueue(text, ephemeral: message.isEphemeral, createdAt: message.createdAt)
        if accepted { DeliveryMetrics.delivered.increment() }
        return accepted
    }

    func insufficientState(_ reason: String) {
        session.outbound.close(.insufficientState, reason: "insufficient state: re-subscribe with your last offset")
    }

    // MARK: Runs

    func isFollowing(_ runID: String) -> Bool { feeds.contains(.workflow(runID)) }

    func follow(
        _ runID: String, since: StreamPosition?, hub: DeliveryHub, history: ChannelHistory,
        announce: (_ recovered: Bool, _ position: StreamPosition?) -> Void = { _, _ in }
    ) async throws -> ChannelFeed.Opened {
        let opened = try await ChannelFeed.open(
            .workflow(runID), since: since, hub: hub, history: history, sink: self, loop: session.loop, announce: announce)
        await feeds.replace(with: opened.feed)
        return opened
    }

    func unfollow(_ runID: String) async {
        await feeds.remove(.workflow(runID))
    }

    func unfollowAll() async {
        await feeds.removeAll()
    }
}
