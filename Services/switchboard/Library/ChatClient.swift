import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import SwitchboardContracts

/// A chat-centre WebSocket client for the CLI, benchmarks and tests: send commands, read frames.
public struct ChatClient: Sendable {
    public struct ConnectionError: Error, CustomStringConvertible {
        public var description: String
    }

    private let outbound: AsyncStream<String>.Continuation
    /// Every frame the server sent, decoded, in order, stamped with its arrival time.
    public let frames: FrameInbox

    fileprivate init(outbound: AsyncStream<String>.Continuation, frames: FrameInbox) {
        self.outbound = outbound
        self.frames = frames
    }

    public func send(_ command: ClientCommand) {
        guard let data = try? JSONEncoder().encode(command) else { return }
        outbound.yield(String(decoding: data, as: UTF8.self))
    }

    /// Sends raw text, malformed or not.
    public func sendRaw(_ text: String) {
        outbound.yield(text)
    }

    public func close() {
        outbound.finish()
    }

    /// Sees each text frame as it arrives, with its arrival time, before it is decoded; returns
    /// whether the frame should still be decoded into `frames`. Lets a benchmark count tens of
    /// thousands of frames a second without paying for JSON decoding.
    public typealias TextObserver = @Sendable (_ text: String, _ receivedAt: ContinuousClock.Instant) -> Bool

    /// Connects to `url` with `token` (sent as `Authorization: Bearer`), runs `body`, then closes.
    /// Returns the body's result and the close code the server sent, if it closed the connection.
    /// A handshake that has not completed within `handshakeTimeout` fails with `ConnectionError`
    /// (the WebSocket client has no deadline of its own, and a server going away mid-handshake can
    /// leave it waiting for ever).
    @discardableResult
    public static func withConnection<T: Sendable>(
        url: String, token: String?, logger: Logger = Logger(label: "switchboard.client"),
        handshakeTimeout: Duration = .seconds(15),
        observer: TextObserver? = nil, _ body: @escaping @Sendable (ChatClient) async throws -> T
    ) async throws -> (result: T?, closeCode: UInt16?) {
        let upgraded = OnceFlag()
        let outcome = OnceResult<(result: T?, closeCode: UInt16?)>()
        let connection = Task {
            do {
                outcome.complete(
                    .success(
                        try await run(
                            url: url, token: token, logger: logger, observer: observer, upgraded: upgraded, body)))
            } catch {
                outcome.complete(.failure(error))
            }
        }
        let watchdog = Task {
            try await Task.sleep(for: handshakeTimeout)
            guard !upgraded.isSet else { return }
            // Abandon the stuck attempt: its task ends whenever the library lets it.
            outcome.complete(
                .failure(ConnectionError(description: "no WebSocket handshake from \(url) within \(handshakeTimeout)")))
            connection.cancel()
        }
        defer { watchdog.cancel() }
        return try await outcome.value()
    }

    private static func run<T: Sendable>(
        url: String, token: String?, logger: Logger, observer: TextObserver?, upgraded: OnceFlag,
        _ body: @escaping @Sendable (ChatClient) async throws -> T
    ) async throws -> (result: T?, closeCode: UInt16?) {
        let (outboundStream, outbound) = AsyncStream.makeStream(of: String.self)
        let frames = FrameInbox()
        let client = ChatClient(outbound: outbound, frames: frames)
        var headers = HTTPFields()
        if let token { headers[.authorization] = "Bearer \(token)" }
        let result = ResultBox<T>()
        let closeFrame = try await WebSocketClient.connect(
            url: url, configuration: .init(maxFrameSize: 1 << 20, additionalHeaders: headers), logger: logger
        ) { inbound, writer, _ in
            upgraded.set()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await message in inbound.messages(maxSize: 1 << 22) {
                        guard case .text(let text) = message else { continue }
                        if let observer, !observer(text, .now) { continue }
                        guard let frame = try? JSONDecoder().decode(ServerFrame.self, from: Data(text.utf8))
                        else { continue }
                        frames.push(frame)
                    }
                    frames.finish()
                }
                group.addTask {
                    for await text in outboundStream {
                        try await writer.write(.text(text))
                    }
                }
                group.addTask {
                    defer { outbound.finish() }
                    result.set(try await body(client))
                }
                // The body's end (or the server's close) ends the connection.
                try await group.next()
                group.cancelAll()
            }
        }
        frames.finish()
        return (result.get(), closeFrame.map { UInt16(webSocketErrorCode: $0.closeCode) })
    }
}

/// A flag set once, read from other tasks.
final class OnceFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .releasing) }
    var isSet: Bool { flag.load(ordering: .acquiring) }
}

/// A result set once, awaited by one caller: whichever of the connection and its watchdog comes first.
private final class OnceResult<T: Sendable>: Sendable {
    private let state = Mutex<(result: Result<T, any Error>?, waiter: CheckedContinuation<T, any Error>?)>((nil, nil))

    func complete(_ result: Result<T, any Error>) {
        let waiter = state.withLock { state -> CheckedContinuation<T, any Error>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result)
    }

    func value() async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<T, any Error>? in
                if state.result == nil { state.waiter = continuation }
                return state.result
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

private final class ResultBox<T: Sendable>: @unchecked Sendable {
    // Written once by the body's task before the group ends, read after: ordered by the group's join.
    private var value: T?
    func set(_ value: T) { self.value = value }
    func get() -> T? { value }
}

/// Received frames, waited for one at a time with a timeout. Unlike an AsyncStream, giving up on a wait
/// does not end the sequence.
public final class FrameInbox: Sendable {
    public struct Received: Sendable {
        public var frame: ServerFrame
        /// ContinuousClock instant of arrival, for latency measurements.
        public var receivedAt: ContinuousClock.Instant
    }

    private struct State {
        var buffer: [Received] = []
        var head = 0
        var waiter: CheckedContinuation<Received?, Never>?
        var finished = false

        mutating func take() -> Received? {
            guard head < buffer.count else { return nil }
            defer {
                head += 1
                if head == buffer.count {
                    buffer.removeAll(keepingCapacity: true)
                    head = 0
                }
            }
            return buffer[head]
        }
    }

    private let state = Mutex(State())

    public init() {}

    func push(_ frame: ServerFrame) {
        let received = Received(frame: frame, receivedAt: .now)
        let waiter = state.withLock { state -> CheckedContinuation<Received?, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.buffer.append(received)
            return nil
        }
        waiter?.resume(returning: received)
    }

    func finish() {
        let waiter = state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    private func unshift(_ received: Received) {
        state.withLock { state in
            if state.head > 0 {
                state.head -= 1
                state.buffer[state.head] = received
            } else {
                state.buffer.insert(received, at: 0)
            }
        }
    }

    /// The next frame, or nil when none arrives within `timeout` or the connection closed.
    public func next(within timeout: Duration) async -> Received? {
        // A frame already waiting needs no timer (benchmarks read tens of thousands per second).
        if let ready = takeBuffered() { return ready }
        let result: (Received?, Received?) = await withTaskGroup(of: Received?.self) { group in
            group.addTask { await self.waitNext() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            var late: Received?
            for await other in group where other != nil { late = other }
            return (first, late)
        }
        if let frame = result.0 { return frame }
        // The wait won the race with the timer after all: keep its frame for the next call.
        if let late = result.1 { unshift(late) }
        return nil
    }

    /// Every frame up to and including the first that satisfies `last`; stops early when none arrives
    /// for `idle`.
    public func collect(idle: Duration = .seconds(20), until last: (ServerFrame) -> Bool) async -> [ServerFrame] {
        var frames: [ServerFrame] = []
        while let received = await next(within: idle) {
            frames.append(received.frame)
            if last(received.frame) { break }
        }
        return frames
    }

    /// The next frame satisfying `predicate`, skipping others; nil on timeout.
    public func first(within timeout: Duration, where predicate: (ServerFrame) -> Bool) async -> Received? {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            guard let received = await next(within: deadline - .now) else { return nil }
            if predicate(received.frame) { return received }
        }
        return nil
    }

    /// The connection closed and every frame it brought has been read.
    public var isFinished: Bool {
        state.withLock { $0.finished && $0.head == $0.buffer.count }
    }

    private func takeBuffered() -> Received? {
        state.withLock { $0.take() }
    }

    private func waitNext() async -> Received? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Received?? in
                    if let buffered = state.take() { return .some(buffered) }
                    if state.finished || Task.isCancelled { return .some(nil) }
                    state.waiter = continuation
                    return .none
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}
