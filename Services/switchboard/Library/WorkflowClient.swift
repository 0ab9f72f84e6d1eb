import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import SwitchboardContracts

/// A client of the workflow protocol (`/ws/{session_id}`, seed 003) for tests and benchmarks: send
/// messages, read the server's flat JSON frames.
public struct WorkflowClient: Sendable {
    private let outbound: AsyncStream<String>.Continuation
    /// Every frame the server sent, in order, with its arrival time.
    public let frames: JSONInbox

    public func send(_ message: JSONValue) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(message) else { return }
        outbound.yield(String(decoding: data, as: UTF8.self))
    }

    public func sendRaw(_ text: String) { outbound.yield(text) }

    /// Connects to `url` (`ws://host:port/ws/<session>`) with `token`, runs `body`, then closes. Returns the
    /// body's result and the close code the server sent, if it closed the connection.
    @discardableResult
    public static func withConnection<T: Sendable>(
        url: String, token: String?, logger: Logger = Logger(label: "switchboard.workflow-client"),
        _ body: @escaping @Sendable (WorkflowClient) async throws -> T
    ) async throws -> (result: T?, closeCode: UInt16?) {
        let (outboundStream, outbound) = AsyncStream.makeStream(of: String.self)
        let inbox = JSONInbox()
        let client = WorkflowClient(outbound: outbound, frames: inbox)
        var headers = HTTPFields()
        if let token { headers[.authorization] = "Bearer \(token)" }
        let result = ResultSlot<T>()
        let closeFrame = try await WebSocketClient.connect(
            url: url, configuration: .init(maxFrameSize: 1 << 20, additionalHeaders: headers), logger: logger
        ) { inbound, writer, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for try await message in inbound.messages(maxSize: 1 << 22) {
                        guard case .text(let text) = message,
                            let frame = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
                        else { continue }
                        inbox.push(frame)
                    }
                    inbox.finish()
                }
                group.addTask {
                    for await text in outboundStream { try await writer.write(.text(text)) }
                }
                group.addTask {
                    defer { outbound.finish() }
                    result.set(try await body(client))
                }
                try await group.next()
                group.cancelAll()
            }
        }
        inbox.finish()
        return (result.get(), closeFrame.map { UInt16(webSocketErrorCode: $0.closeCode) })
    }
}

private final class ResultSlot<T: Sendable>: Sendable {
    private let value = Mutex<T?>(nil)
    func set(_ newValue: T) { value.withLock { $0 = newValue } }
    func get() -> T? { value.withLock { $0 } }
}

/// Received JSON frames, waited for one at a time with a timeout.
public final class JSONInbox: Sendable {
    public struct Received: Sendable {
        public var frame: JSONValue
        public var receivedAt: ContinuousClock.Instant
    }

    private struct State {
        var buffer: [Received] = []
        var waiter: CheckedContinuation<Void, Never>?
        var finished = false
    }

    private let state = Mutex(State())

    public init() {}

    func push(_ frame: JSONValue) {
        let waiter = state.withLock { state in
            state.buffer.append(Received(frame: frame, receivedAt: .now))
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func finish() {
        let waiter = state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// The next frame, or nil when none arrives within `timeout` or the connection closed.
    public func next(within timeout: Duration) async -> Received? {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (frame, finished) = state.withLock { state -> (Received?, Bool) in
                state.buffer.isEmpty ? (nil, state.finished) : (state.buffer.removeFirst(), false)
            }
            if let frame { return frame }
            if finished || ContinuousClock.now >= deadline { return nil }
            // Wake on a new frame, or poll the deadline every few milliseconds.
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.waitForPush() }
                group.addTask { try? await Task.sleep(for: .milliseconds(20)) }
                await group.next()
                group.cancelAll()
                self.wakeWaiter()
            }
        }
    }

    /// The next frame of type `type` (or satisfying `predicate`), skipping others; nil on timeout.
    public func first(within timeout: Duration, where predicate: (JSONValue) -> Bool) async -> JSONValue? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard let received = await next(within: deadline - .now) else { return nil }
            if predicate(received.frame) { return received.frame }
        }
        return nil
    }

    public func first(_ type: String, within timeout: Duration = .seconds(30)) async -> JSONValue? {
        await first(within: timeout) { $0["type"]?.stringValue == type }
    }

    /// Every frame up to and including the first satisfying `last`; stops when none arrives for `idle`.
    public func collect(idle: Duration = .seconds(30), until last: (JSONValue) -> Bool) async -> [JSONValue] {
        var frames: [JSONValue] = []
        while let received = await next(within: idle) {
            frames.append(received.frame)
            if last(received.frame) { break }
        }
        return frames
    }

    private func waitForPush() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Bool in
                if !state.buffer.isEmpty || state.finished || Task.isCancelled { return true }
                state.waiter = continuation
                return false
            }
            if ready { continuation.resume() }
        }
    }

    private func wakeWaiter() {
        let waiter = state.withLock { state in
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }
}
