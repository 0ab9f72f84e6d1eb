import Hummingbird
import Metrics
import SwitchboardContracts
import SwitchboardRuntime

/// The one way in, for every entry point: the WebSocket doors (chat, workflows, Bisheng, devices),
/// SSE and REST streams, and the OpenAI and BluePlan doors. The token is verified once; a connection
/// then counts against its user's limit across gateways (the routing table in Redis) until it is
/// released; requests and commands share one per-user rate.
struct Admission: Sendable {
    let authority: TokenAuthority
    let registry: SessionRegistry
    let routing: ConnectionRegistry
    let limiter: RateLimiter
    let settings: GatewaySettings

    /// Why a connection or request was not let in: a close code for sockets, a status for HTTP.
    struct Refusal: Error, Sendable {
        var closeCode: CloseCode
        var status: HTTPResponse.Status
        var message: String

        static let shuttingDown = Refusal(
            closeCode: .shutdown, status: .serviceUnavailable,
            message: "this gateway is shutting down; connect to another instance")
        static let unavailable = Refusal(
            closeCode: .serverError, status: .serviceUnavailable, message: "the routing table is unavailable; retry")

        var httpError: HTTPError {
            status == .serviceUnavailable
                ? HTTPError(status, headers: [.retryAfter: "1"], message: message) : HTTPError(status, message: message)
        }
    }

    /// The user of a token; 401 when it is missing or does not verify.
    func authenticate(token: String?) async throws -> SwitchboardClaims {
        try await Gateway.authenticate(token: token, authority: authority)
    }

    /// Before a WebSocket upgrade: 503 once the gateway is shutting down, so the client's backoff takes
    /// it to another instance instead of back onto the one going away.
    func checkAcceptingConnections() throws {
        guard !registry.isDraining else { throw Refusal.shuttingDown.httpError }
    }

    /// Counts `session` as one of its user's connections; `release` it when it ends.
    func admit(_ session: ClientSession) async throws(Refusal) {
        guard registry.add(session) else {
            GatewayMetrics.admissionsRefused.increment()
            throw .shuttingDown
        }
        let registered: Bool
        do {
            registered = try await routing.register(userID: session.userID, connectionID: session.id)
        } catch {
            registry.remove(session)
            throw .unavailable
        }
        guard registered else {
            registry.remove(session)
            GatewayMetrics.admissionsRefused.increment()
            throw Refusal(
                closeCode: .connectionLimit, status: .tooManyRequests,
                message: "at most \(settings.maxConnectionsPerUser) connections per user")
        }
    }

    /// `admit`, and counts the session in `pool` too: a cap on one kind of connection over every
    /// gateway and user (Bisheng's max_concurrent_sessions). `refresh` it while it lives.
    func admit(_ session: ClientSession, pool: String, limit: Int) async throws(Refusal) {
        try await admit(session)
        let claimed: Bool
        do {
            claimed = try await routing.claim(pool: pool, connectionID: session.id, limit: limit)
        } catch {
            await release(session)
            throw .unavailable
        }
        guard claimed else {
            await release(session)
            GatewayMetrics.admissionsRefused.increment()
            throw Refusal(
                closeCode: .connectionLimit, status: .tooManyRequests,
                message: "at most \(limit) concurrent \(pool) sessions; retry later")
        }
    }

    /// Keeps a pooled session counted (its entry expires with the routing TTL otherwise).
    func refresh(_ session: ClientSession, pool: String, limit: Int) async {
        _ = try? await routing.claim(pool: pool, connectionID: session.id, limit: limit)
    }

    func release(_ session: ClientSession, pool: String) async {
        await routing.release(pool: pool, connectionID: session.id)
        await release(session)
    }

    func release(_ session: ClientSession) async {
        registry.remove(session)
        await routing.unregister(userID: session.userID, connectionID: session.id)
    }

    /// One command or request of `userID`; false once the user is over the rate (the caller answers
    /// RATE_LIMITED or 429). Throws when Redis cannot say (the caller answers "retry").
    func allowRequest(userID: String) async throws -> Bool {
        guard try await limiter.allow(userID: userID) else {
            GatewayMetrics.rateLimited.increment()
            return false
        }
        return true
    }

    /// The HTTP form of `allowRequest`: throws 429.
    func checkRequest(userID: String) async throws {
        guard try await allowRequest(userID: userID) else {
            throw HTTPError(
                .tooManyRequests, headers: [.retryAfter: "1"],
                message: "more than \(Int(settings.commandsPerSecond)) requests per second; slow down")
        }
    }
}
