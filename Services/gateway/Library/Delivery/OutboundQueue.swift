import DequeModule
import Metrics
import Synchronization
import SwitchboardContracts

/// What an outbound buffer counts against its bound.
protocol OutboundSized {
    var byteCount: Int { get }
}

extension String: OutboundSized {
    var byteCount: Int { utf8.count }
}

/// The bounded outbound buffer of one connection, as a plain state machine. Ephemeral frames (typing,
/// progress) are dropped oldest-first to make room; anything else that does not fit means the client
/// cannot keep up, and it is disconnected to recover by offset (a slow client never slows the others).
struct OutboundBuffer<Payload: OutboundSized> {
    enum EnqueueResult: Equatable {
        case queued(droppedEphemeral: Int)
        case overflow
    }

    /// A queued frame; `createdAt` is its event's creation time (µs, 0 for command answers).
    struct Item {
        var payload: Payload
        var ephemeral: Bool
        var createdAt: Int64
    }

    let limitBytes: Int
    private var items = Deque<Item>()
    private(set) var bytes = 0

    init(limitBytes: Int) {
        self.limitBytes = limitBytes
    }

    var count: Int { items.count }

    mutating func enqueue(_ payload: Payload, ephemeral: Bool, createdAt: Int64 = 0) -> EnqueueResult {
        let size = payload.byteCount
        var dropped = 0
        if bytes + size > limitBytes {
            // Make room from the oldest ephemeral frames.
            var kept = Deque<Item>()
            while let item = items.popFirst() {
                if item.ephemeral && bytes + size > limitBytes {
                    bytes -= item.payload.byteCount
                    dropped += 1
                } else {
                    kept.append(item)
                }
            }
            items = kept
        }
        guard bytes + size <= limitBytes else {
            if ephemeral { return .queued(droppedEphemeral: dropped + 1) }
            return .overflow
        }
        items.append(Item(payload: payload, ephemeral: ephemeral, createdAt: createdAt))
        bytes += size
        return .queued(droppedEphemeral: dropped)
    }

    mutating func dequeue() -> Item? {
        guard let item = items.popFirst() else { return nil }
        bytes -= item.payload.byteCount
        return item
    }

    mutating func removeAll() {
        items = []
        bytes = 0
    }
}

extension OutboundBuffer.Item where Payload == String {
    var text: String { payload }
}

/// Where a connection's frames go, whatever the transport: a WebSocket on its event loop, or the
/// queue an SSE response task drains. Usable from any thread.
protocol ClientOutbound: Sendable {
    /// Queues a frame; false when the connection is closing or the client fell too far behind.
    @discardableResult
    func enqueue(_ text: String, ephemeral: Bool, createdAt: Int64) -> Bool
    /// Closes the connection with `code` once the frames queued so far are written.
    func close(_ code: CloseCode, reason: String)
    /// Ends the connection's output without a close (its socket is gone).
    func finish()
}

extension ClientOutbound {
    @discardableResult
    func enqueue(_ text: String, ephemeral: Bool = false) -> Bool {
        enqueue(text, ephemeral: ephemeral, createdAt: 0)
    }
}

/// What the writer of a connection does next.
enum OutboundItem: Sendable, Equatable {
    /// A frame to write; `createdAt` (µs) times event creation → socket write, 0 for other frames.
    case frame(String, createdAt: Int64)
    case close(CloseCode, reason: String)
}

/// The outbound buffer shared by the producers of frames (Redis pushes, command answers) and the one
/// task that writes the socket.
final class OutboundQueue: ClientOutbound, Sendable {
    private struct State {
        var buffer: OutboundBuffer<String>
        var waiter: CheckedContinuation<OutboundItem?, Never>?
        var closing: (CloseCode, String)?
        var finished = false
    }

    private let state: Mutex<State>
    private let onOverflow: @Sendable () -> Void

    /// `onOverflow` runs once when the client falls behind: the writer may be stuck on a socket the
    /// client no longer reads, so the connection's owner must be able to cut it off.
    init(limitBytes: Int, onOverflow: @escaping @Sendable () -> Void = {}) {
        state = Mutex(State(buffer: OutboundBuffer(limitBytes: limitBytes)))
        self.onOverflow = onOverflow
    }

    /// Queues a frame; false when the queue is closed or overflowed (the connection is then closed
    /// with `slowConsumer`).
    @discardableResult
    func enqueue(_ text: String, ephemeral: Bool = false, createdAt: Int64 = 0) -> Bool {
        var overflowed = false
        let (waiter, item, accepted): (CheckedContinuation<OutboundItem?, Never>?, OutboundItem?, Bool) = state.withLock
        { state in
            guard !state.finished, state.closing == nil else { return (nil, nil, false) }
            if let waiter = state.waiter, state.buffer.count == 0 {
                state.waiter = nil
                return (waiter, .frame(text, createdAt: createdAt), true)
            }
            switch state.buffer.enqueue(text, ephemeral: ephemeral, createdAt: createdAt) {
            case .queued(let dropped):
                if dropped > 0 { GatewayMetrics.droppedEphemeral.increment(by: Int64(dropped)) }
                return (nil, nil, true)
            case .overflow:
                GatewayMetrics.slowDisconnects.increment()
                let reason = "slow consumer: reconnect and recover by offset"
                state.closing = (.slowConsumer, reason)
                overflowed = true
                let waiter = state.waiter
                state.waiter = nil
                if waiter != nil { state.finished = true }
                return (waiter, .close(.slowConsumer, reason: reason), false)
            }
        }
        if let waiter { waiter.resume(returning: item) }
        if overflowed { onOverflow() }
        return accepted
    }

    /// Asks the writer to close the connection with `code` once the frames queued so far are written.
    func close(_ code: CloseCode, reason: String) {
        let waiter = state.withLock { state -> CheckedContinuation<OutboundItem?, Never>? in
            guard state.closing == nil, !state.finished else { return nil }
            state.closing = (code, reason)
            guard state.buffer.count == 0 else { return nil }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: .close(code, reason: reason))
    }

    /// Ends the queue without a close frame (the socket is already gone).
    func finish() {
        let waiter = state.withLock { state in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// The next thing to write; nil when finished.
    func next() async -> OutboundItem? {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> OutboundItem?? in
                if state.finished { return .some(nil) }
                if let closing = state.closing, closing.0 == .slowConsumer {
                    state.finished = true
                    return .some(.close(closing.0, reason: closing.1))
                }
                if let item = state.buffer.dequeue() { return .some(.frame(item.payload, createdAt: item.createdAt)) }
                if let closing = state.closing {
                    state.finished = true
                    return .some(.close(closing.0, reason: closing.1))
                }
                state.waiter = continuation
                return .none
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
