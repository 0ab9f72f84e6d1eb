import DequeModule
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import NIOCore
import NIOHTTP1
import NIOHTTPTypesHTTP1
import Synchronization
import SwitchboardContracts

/// What a WebSocket front door gets to decide on before the 101: the request's path, its query and
/// headers, and the parameters its path pattern captured.
struct UpgradeRequest: Sendable {
    var path: String
    var query: [String: String]
    var headers: HTTPHeaders
    /// Values of the pattern's `{name}` segments.
    var parameters: [String: String]
    var remoteAddress: String?

    /// The same request as the router sees one, for code shared with HTTP routes.
    var http: Request {
        let head = HTTPRequest(
            method: .get, scheme: nil, authority: headers.first(name: "host"), path: uri,
            headerFields: HTTPFields(headers, splitCookie: false))
        return Request(head: head, body: .init(buffer: ByteBuffer()))
    }

    private var uri: String

    /// The token of the request: `Authorization: Bearer`, or `?token=` for browsers.
    var bearerToken: String? {
        if let header = headers.first(name: "authorization"), header.hasPrefix("Bearer ") {
            return String(header.dropFirst("Bearer ".count))
        }
        return query["token"]
    }

    init(head: HTTPRequestHead, parameters: [String: String] = [:], remoteAddress: String? = nil) {
        let components = URLComponents(string: head.uri)
        self.uri = head.uri
        self.path = components?.percentEncodedPath ?? head.uri
        var query: [String: String] = [:]
        for item in components?.queryItems ?? [] where query[item.name] == nil { query[item.name] = item.value ?? "" }
        self.query = query
        self.headers = head.headers
        self.parameters = parameters
        self.remoteAddress = remoteAddress
    }
}

/// A WebSocket front door on the event-loop core. `admit` runs before the upgrade is answered (throw
/// an `HTTPError` to refuse it with that status); the session it returns then hears, in order and
/// one at a time, that the socket opened, every message, and that it closed.
protocol WebSocketDoor: Sendable {
    /// The path this door serves, with `{name}` for a captured segment (`/ws/{session_id}`).
    var pathPattern: String { get }
    func admit(_ request: UpgradeRequest) async throws -> any WebSocketDoorSession
}

protocol WebSocketDoorSession: Sendable {
    /// When the credential the socket was let in with expires: the core closes it then with 4500
    /// (docs/protocol.md). nil: never.
    var expiresAt: Date? { get }
    func opened(_ socket: WebSocketOutbound) async
    func received(_ message: WebSocketMessage, on socket: WebSocketOutbound) async
    func closed() async
}

extension WebSocketDoorSession {
    var expiresAt: Date? { nil }
}

/// The doors of one gateway, matched by path.
struct WebSocketDoors: Sendable {
    private let doors: [any WebSocketDoor]

    init(_ doors: [any WebSocketDoor]) {
        self.doors = doors
    }

    /// A plain GET of a door's path gets the answer its upgrade would (401 for a bad token, 503 while
    /// draining), or 426 Upgrade Required: a client can find out why it cannot connect without a socket.
    func addPlainHTTPAnswers<Context: RequestContext>(to router: Router<Context>) {
        for door in doors {
            let routePath = door.pathPattern.split(separator: "/").map { segment in
                segment.hasPrefix("{") && segment.hasSuffix("}")
                    ? ":" + segment.dropFirst().dropLast() : String(segment)
            }.joined(separator: "/")
            router.get(RouterPath("/" + routePath)) { request, context -> Response in
                var parameters: [String: String] = [:]
                for (name, value) in context.parameters { parameters[String(name)] = String(value) }
                let head = HTTPRequestHead(
                    version: .http1_1, method: .GET, uri: request.uri.description, headers: HTTPHeaders(request.headers)
                )
                _ = try await door.admit(UpgradeRequest(head: head, parameters: parameters))
                throw HTTPError(
                    .upgradeRequired, headers: [.upgrade: "websocket"], message: "this endpoint speaks WebSocket")
            }
        }
    }

    /// The door for `path` and the segments its pattern captured.
    func match(_ path: String) -> (door: any WebSocketDoor, parameters: [String: String])? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        for door in doors {
            let pattern = door.pathPattern.split(separator: "/", omittingEmptySubsequences: true)
            guard pattern.count == segments.count else { continue }
            var parameters: [String: String] = [:]
            var matches = true
            for (expected, actual) in zip(pattern, segments) {
                if expected.hasPrefix("{") && expected.hasSuffix("}") {
                    parameters[String(expected.dropFirst().dropLast())] =
                        actual.removingPercentEncoding ?? String(actual)
                } else if expected != actual {
                    matches = false
                    break
                }
            }
            if matches { return (door, parameters) }
        }
        return nil
    }
}

/// Hands a connection's events to its session one at a time, in order, without a task per connection:
/// a task runs only while events are waiting and ends when the inbox is empty.
final class SerialInbox: Sendable {
    enum Event: Sendable {
        case opened
        case message(WebSocketMessage)
        case closed
    }

    private struct State {
        var events = Deque<Event>()
        var running = false
        var closed = false
        var session: (any WebSocketDoorSession)?
        var socket: WebSocketOutbound?
    }

    private let state = Mutex(State())
    /// Called (on any thread) when the inbox ran dry after it had asked the socket to stop reading.
    private let onDrained: @Sendable () -> Void
    private let highWater: Int

    init(highWater: Int, onDrained: @escaping @Sendable () -> Void) {
        self.highWater = highWater
        self.onDrained = onDrained
    }

    func start(session: any WebSocketDoorSession, socket: WebSocketOutbound) {
        state.withLock {
            $0.session = session
            $0.socket = socket
        }
        push(.opened)
    }

    /// Adds an event; returns how many are waiting.
    @discardableResult
    func push(_ event: Event) -> Int {
        let (start, count) = state.withLock { state -> (Bool, Int) in
            guard !state.closed else { return (false, 0) }
            if case .closed = event { state.closed = true }
            state.events.append(event)
            guard !state.running, state.session != nil else { return (false, state.events.count) }
            state.running = true
            return (true, state.events.count)
        }
        if start { Task { await self.run() } }
        return count
    }

    /// The socket ended: the session hears `closed` after whatever it has not handled yet.
    func close() {
        push(.closed)
    }

    private func run() async {
        var wasFull = false
        while true {
            let next = state.withLock { state -> (Event, any WebSocketDoorSession, WebSocketOutbound)? in
                guard let session = state.session, let socket = state.socket, let event = state.events.popFirst() else {
                    state.running = false
                    return nil
                }
                if state.events.count >= highWater - 1 { wasFull = true }
                return (event, session, socket)
            }
            guard let (event, session, socket) = next else { break }
            switch event {
            case .opened: await session.opened(socket)
            case .message(let message): await session.received(message, on: socket)
            case .closed:
                await session.closed()
                // Nothing of the connection outlives it.
                state.withLock {
                    $0.session = nil
                    $0.socket = nil
                    $0.events.removeAll()
                }
                return
            }
        }
        if wasFull { onDrained() }
    }
}

/// A door session written as one task per connection (`serve` reads its messages as a stream and
/// returns when the client is gone): for the low-volume doors whose logic is a loop with timers of
/// its own (workflows, Bisheng chat, devices). The socket itself still lives on its event loop.
final class StreamingDoorSession: WebSocketDoorSession {
    typealias Serve = @Sendable (_ messages: AsyncStream<WebSocketMessage>, _ socket: WebSocketOutbound) async -> Void

    private let messages: AsyncStream<WebSocketMessage>
    private let continuation: AsyncStream<WebSocketMessage>.Continuation
    private let serve: Serve
    private let running = Mutex<Task<Void, Never>?>(nil)
    let expiresAt: Date?

    init(expiresAt: Date?, _ serve: @escaping Serve) {
        (messages, continuation) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
        self.serve = serve
        self.expiresAt = expiresAt
    }

    func opened(_ socket: WebSocketOutbound) async {
        let task = Task { [messages, serve] in
            await serve(messages, socket)
            // Served to the end by the door (it closed the socket): stop reading too.
            socket.close(.shutdown, reason: "session ended")
        }
        running.withLock { $0 = task }
    }

    func received(_ message: WebSocketMessage, on socket: WebSocketOutbound) async {
        continuation.yield(message)
    }

    func closed() async {
        continuation.finish()
        await running.withLock { $0 }?.value
    }
}
