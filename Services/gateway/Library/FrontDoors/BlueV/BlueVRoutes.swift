import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardWorkflow

/// The open `/ws/{session_id}` sockets of every gateway, for seed 003's `GET /api/connections`: one
/// JSON line per socket with a TTL its socket refreshes, and indexes (everyone's, each user's) scored
/// by expiry, so a dead gateway's sockets drop out without a disconnect.
struct BlueVDirectory: Sendable {
    let redis: RedisClient
    let gatewayID: String
    let ttlSeconds: Int

    /// The seed's `connections[]` item; `user_id`, `connection_id` and `gateway` are Switchboard's and
    /// shown to admins only.
    struct Entry: Codable, Sendable {
        var session_id: String
        var connected_at: String
        var last_heartbeat: String
        var subscriptions: [String]
        var client_info: [String: JSONValue]
        var user_id: String?
        var connection_id: String?
        var gateway: String?

        var forItsUser: Entry {
            var entry = self
            (entry.user_id, entry.connection_id, entry.gateway) = (nil, nil, nil)
            return entry
        }
    }

    func publish(_ entry: Entry) async {
        guard let connectionID = entry.connection_id, let userID = entry.user_id,
            let json = try? JSONEncoder().encode(entry)
        else { return }
        let expiry = Int(Date().timeIntervalSince1970) + ttlSeconds
        _ = try? await redis.pipeline([
            [
                "SET", RedisArgument(Keyspace.Workflow.socket(connectionID)),
                RedisArgument(String(decoding: json, as: UTF8.self)),
                "EX", RedisArgument(ttlSeconds),
            ],
            [
                "ZADD", RedisArgument(Keyspace.Cluster.workflowSockets), RedisArgument(expiry),
                RedisArgument(connectionID),
            ],
            [
                "ZADD", RedisArgument(Keyspace.User.workflowSockets(userID)), RedisArgument(expiry),
                RedisArgument(connectionID),
            ],
            ["EXPIRE", RedisArgument(Keyspace.User.workflowSockets(userID)), RedisArgument(ttlSeconds)],
        ])
    }

    func remove(connectionID: String, userID: String) async {
        _ = try? await redis.pipeline([
            ["DEL", RedisArgument(Keyspace.Workflow.socket(connectionID))],
            ["ZREM", RedisArgument(Keyspace.Cluster.workflowSockets), RedisArgument(connectionID)],
            ["ZREM", RedisArgument(Keyspace.User.workflowSockets(userID)), RedisArgument(connectionID)],
        ])
    }

    /// Every live socket, or only `user`'s.
    func entries(of user: String?) async throws -> [Entry] {
        let now = Int(Date().timeIntervalSince1970)
        let index = RedisArgument(user.map(Keyspace.User.workflowSockets) ?? Keyspace.Cluster.workflowSockets)
        let replies = try await redis.pipeline([
            ["ZREMRANGEBYSCORE", index, "-inf", RedisArgument(now - 1)], ["ZRANGE", index, "0", "-1"],
        ])
        let ids = (replies[1].array ?? []).compactMap(\.string)
        guard !ids.isEmpty else { return [] }
        let lines = try await redis.pipeline(ids.map { ["GET", RedisArgument(Keyspace.Workflow.socket($0))] })
        return lines.compactMap { $0.string.flatMap { try? JSONDecoder().decode(Entry.self, from: Data($0.utf8)) } }
            .filter { user == nil || $0.user_id == user }
            .sorted { $0.connected_at < $1.connected_at }
    }
}

/// Seed 003's REST: `GET /api/connections`, `POST /api/broadcast`, with the seed's CORS.
extension WorkflowSocket {
    /// The seed's `get_connection_stats()`, over the cluster.
    struct ConnectionStats: Encodable {
        var total_connections: Int
        var active_workflows: Int
        var connections: [BlueVDirectory.Entry]
        /// Switchboard's: connections per live gateway (every door), for admins only.
        var gateways: [String: Int]?
    }

    func addSeedRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/api/connections") { request, _ -> Response in
            try await SeedCORS.answer(request) {
                let claims = try await Gateway.authenticate(request, authority: authority)
                // Ordinary users see their own sockets and no instance ids; admins see the cluster.
                let entries = try await directory.entries(of: claims.isPrivileged ? nil : claims.userID)
                var stats = ConnectionStats(
                    total_connections: entries.count, active_workflows: try await activeWorkflows(of: entries),
                    connections: claims.isPrivileged ? entries : entries.map(\.forItsUser))
                if claims.isPrivileged { stats.gateways = try await routing.gateways() }
                return try Response.json(stats)
            }
        }
        router.post("/api/broadcast") { request, requestContext -> Response in
            try await SeedCORS.answer(request) {
                let claims = try await Gateway.authenticate(request, authority: authority)
                guard claims.isPrivileged else {
                    throw HTTPError(.forbidden, message: "broadcasts need an admin or service token")
                }
                let body = try await request.body.collect(upTo: settings.maxFrameBytes)
                guard let posted = try? JSONDecoder().decode(JSONValue.self, from: Data(body.readableBytesView)) else {
                    throw HTTPError(.badRequest, message: "the body is any JSON value")
                }
                try await broadcast(posted, from: claims.userID)
                return try Response.json(Broadcasted())
            }
        }
        for path in ["/api/connections", "/api/broadcast"] {
            router.on(RouterPath(path), method: .options) { request, _ in SeedCORS.preflight(request) }
        }
    }

    /// One event on the system channel: BlueV sockets get the posted JSON as it is, chat sockets a
    /// USER_NOTIFICATION made of its `type`, `title` and `message` where it has them.
    private func broadcast(_ posted: JSONValue, from sender: String) async throws {
        let kinds: Set<String> = ["info", "warning", "error", "success"]
        let kind = posted["type"]?.stringValue.flatMap { kinds.contains($0) ? $0 : nil } ?? "info"
        let message = posted["message"]?.stringValue ?? WorkflowConnection.render(posted) ?? ""
        let event = try ClientEvent(
            channel: .system,
            payload: UserNotification(
                type: kind, title: posted["title"]?.stringValue ?? "Broadcast", message: message,
                persistent: posted["persistent"]?.boolValue ?? false, from: sender, broadcast: posted))
        try await context.publish(
            context.envelope(event, routingKey: SwitchboardContracts.Channel.system.description),
            to: Topics.clientEvents)
    }

    /// Runs not yet ended that were started from the sessions listed (the seed counts the workflows
    /// bound to its open sessions).
    private func activeWorkflows(of entries: [BlueVDirectory.Entry]) async throws -> Int {
        var sessions = Set<[String]>()
        for entry in entries { sessions.insert([entry.user_id ?? "", entry.session_id]) }
        var active = 0
        for session in sessions {
            for run in try await store.runs(ofSession: session[1], user: session[0]) {
                if let record = try await store.record(run.runID), !record.status.isTerminal { active += 1 }
            }
        }
        return active
    }

    /// The seed's answer to a broadcast.
    struct Broadcasted: Encodable {
        var status = "broadcasted"
    }
}

/// The seed's `CORSMiddleware(allow_origins=["*"], allow_credentials=True, allow_methods=["*"],
/// allow_headers=["*"])` as Starlette answers it: preflights echo the origin and the asked headers;
/// other answers allow any origin (the caller's own when it sends cookies).
enum SeedCORS {
    static let methods = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"

    static func preflight(_ request: Request) -> Response {
        var headers: HTTPFields = [
            .accessControlAllowMethods: methods, .accessControlMaxAge: "600", .accessControlAllowCredentials: "true",
        ]
        headers[.vary] = "Origin"
        if let origin = request.headers[.origin] { headers[.accessControlAllowOrigin] = origin }
        if let asked = request.headers[.accessControlRequestHeaders] { headers[.accessControlAllowHeaders] = asked }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: "OK")))
    }

    /// `body`'s answer, or its HTTP error, with the CORS headers of a simple request.
    static func answer(_ request: Request, _ body: () async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin] else { return try await body() }
        let allowed = request.headers[.cookie] != nil ? origin : "*"
        do {
            var response = try await body()
            response.headers[.accessControlAllowOrigin] = allowed
            response.headers[.accessControlAllowCredentials] = "true"
            return response
        } catch let error as HTTPError {
            var headers = error.headers
            headers[.accessControlAllowOrigin] = allowed
            headers[.accessControlAllowCredentials] = "true"
            throw HTTPError(error.status, headers: headers, message: error.body)
        }
    }
}
