import Foundation
import HummingbirdWebSocket
import Logging
import Metrics
import NIOCore
import NIOWebSocket
import Synchronization
import SwitchboardContracts

/// One frame's payload ready for the socket: the text (or binary) bytes and, when the frame is shared
/// by many followers, its compressed form made once per event loop.
struct OutboundPayload {
    var bytes: ByteBuffer
    var isBinary = false
    /// The same message deflated (no context takeover), when the sender already has it.
    var deflated: ByteBuffer?
}

extension OutboundPayload: OutboundSized {
    var byteCount: Int { deflated?.readableBytes ?? bytes.readableBytes }
}

/// The settings every WebSocket connection of the gateway runs with.
struct WebSocketConnectionSettings: Sendable {
    var maxMessageBytes: Int
    var outboundLimitBytes: Int
    var pingInterval: TimeAmount
    /// A ping not answered within this is missed (seed 000: 5 s).
    var pongTimeout: TimeAmount = .seconds(5)
    /// Pings missed in a row before the connection is closed with 4004 (seed 000: 3).
    var missedPongLimit = 3
    /// How long a close frame waits for the client's answer before the socket is closed.
    var closeTimeout: TimeAmount = .seconds(5)
    /// Delay before a connection that overflowed its buffer is cut off (it may still read the close frame).
    var cutOffDelay: TimeAmount = .seconds(1)
    /// Messages waiting for their handler before the socket stops reading (TCP backpressure).
    var inboxHighWater = 32
}

/// A WebSocket connection as a handler in its channel's pipeline, owned by its event loop: no Swift
/// task while it idles. Reads are parsed where they arrive and handed to the door's session through
/// a `SerialInbox`; writes go through a bounded `OutboundBuffer` into NIO's write buffer while the
/// socket is writable and are flushed once per loop tick, however many frames were queued in it.
final class WebSocketConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let settings: WebSocketConnectionSettings
    private let deflate: DeflateParameters?
    /// Where read messages go; set once, before the handler joins the pipeline.
    var inbox: SerialInbox?
    private var context: ChannelHandlerContext?
    private var buffer: OutboundBuffer<OutboundPayload>
    private var drainScheduled = false
    private var pingTask: RepeatedTask?
    private var missedPongs = 0
    /// A ping is out and no pong has come since.
    private var awaitingPong = false
    private var closeSent = false
    /// A close asked for while frames were still queued: sent once they are written.
    private var pendingClose: (code: WebSocketErrorCode, reason: String)?
    private var closed = false
    /// The thread-safe face of this connection; released when it closes (it holds this handler).
    var outbound: WebSocketOutbound?
    /// A message split over frames, gathered until its last frame.
    private var partial: (bytes: ByteBuffer, isBinary: Bool, compressed: Bool)?

    init(settings: WebSocketConnectionSettings, deflate: DeflateParameters?) {
        self.settings = settings
        self.deflate = deflate
        self.buffer = OutboundBuffer(limitBytes: settings.outboundLimitBytes)
    }

    /// Whether the shared, once-per-loop compressed frames (15-bit window) suit this connection.
    var sharesDeflatedFrames: Bool { deflate?.serverWindowBits == 15 }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        pingTask = context.eventLoop.scheduleRepeatedTask(
            initialDelay: settings.pingInterval, delay: settings.pingInterval
        ) { _ in loopBound.value.ping() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The client closed its side without a close frame (the server allows half-closure for HTTP).
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A protocol error (bad or oversized frame) was answered with its close code by NIO's
        // WebSocketProtocolErrorHandler ahead of this handler; anything else ends the connection.
        context.close(promise: nil)
    }

    /// Releases everything this connection holds; the session hears of it once.
    private func finish() {
        guard !closed else { return }
        closed = true
        outbound?.markClosed()
        outbound = nil
        pingTask?.cancel()
        pingTask = nil
        buffer.removeAll()
        partial = nil
        context = nil
        inbox?.close()
        inbox = nil
    }

    // MARK: Reading

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .pong:
            awaitingPong = false
            missedPongs = 0
        case .ping:
            guard frame.fin else { return close(code: .protocolError, reason: "fragmented ping") }
            write(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData), flush: true)
        case .connectionClose:
            receivedClose(frame)
        case .text, .binary:
            guard partial == nil else {
                return close(code: .protocolError, reason: "a new message before the last one ended")
            }
            collect(frame.unmaskedData, isBinary: frame.opcode == .binary, compressed: frame.rsv1, fin: frame.fin)
        case .continuation:
            guard let started = partial else {
                return close(code: .protocolError, reason: "a continuation without a message")
            }
            collect(frame.unmaskedData, isBinary: started.isBinary, compressed: started.compressed, fin: frame.fin)
        default:
            close(code: .protocolError, reason: "unknown opcode")
        }
    }

    private func collect(_ data: ByteBuffer, isBinary: Bool, compressed: Bool, fin: Bool) {
        if compressed && deflate == nil {
            return close(code: .protocolError, reason: "compressed frame without permessage-deflate")
        }
        var gathered = partial?.bytes ?? ByteBuffer()
        if partial == nil { gathered = data } else { var more = data; gathered.writeBuffer(&more) }
        guard gathered.readableBytes <= settings.maxMessageBytes else {
            partial = nil
            return close(code: .messageTooLarge, reason: "messages are at most \(settings.maxMessageBytes) bytes")
        }
        guard fin else {
            partial = (gathered, isBinary, compressed)
            return
        }
        partial = nil
        var payload = gathered
        if compressed {
            guard let context, let deflater = LoopDeflater.current,
                let inflated = try? deflater.inflate(
                    gathered, limit: settings.maxMessageBytes, allocator: context.channel.allocator)
            else {
                return close(
                    code: .messageTooLarge, reason: "a compressed message that does not inflate within the limit")
            }
            payload = inflated
        }
        let message: WebSocketMessage
        if isBinary {
            message = .binary(payload)
        } else {
            guard let text = try? payload.getUTF8ValidatedString(at: payload.readerIndex, length: payload.readableBytes)
            else {
                return close(code: .dataInconsistentWithMessage, reason: "text messages are UTF-8")
            }
            message = .text(text)
        }
        // A client sending faster than its session handles: stop reading (TCP pushes back) until it catches up.
        if let inbox, inbox.push(.message(message)) >= settings.inboxHighWater {
            context?.channel.setOption(.autoRead, value: false).whenComplete { _ in }
        }
    }

    /// The session caught up with its inbox: read from the socket again.
    func resumeReading() {
        context?.channel.setOption(.autoRead, value: true).whenComplete { _ in }
    }

    private func receivedClose(_ frame: WebSocketFrame) {
        if !closeSent {
            // Echo the client's code, as RFC 6455 §5.5.1 asks, then end.
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self) ?? 1000
            var answer = context?.channel.allocator.buffer(capacity: 2) ?? ByteBuffer()
            answer.writeInteger(code)
            closeSent = true
            write(WebSocketFrame(fin: true, opcode: .connectionClose, data: answer), flush: true)
        }
        context?.close(promise: nil)
    }

    // MARK: Writing

    /// Queues a frame; false when the connection is closing or the client fell too far behind (it is
    /// then closed with 4002). Ephemeral frames make room by dropping older ephemeral ones.
    @discardableResult
    func enqueue(_ payload: OutboundPayload, ephemeral: Bool, createdAt: Int64) -> Bool {
        guard !closed, !closeSent, pendingClose == nil else { return false }
        switch buffer.enqueue(payload, ephemeral: ephemeral, createdAt: createdAt) {
        case .queued(let dropped):
            if dropped > 0 { GatewayMetrics.droppedEphemeral.increment(by: Int64(dropped)) }
            scheduleDrain()
            return true
        case .overflow:
            GatewayMetrics.slowDisconnects.increment()
            buffer.removeAll()
            pendingClose = nil
            close(code: .init(CloseCode.slowConsumer), reason: "slow consumer: reconnect and recover by offset")
            // A client that stopped reading never takes the close frame: cut the socket soon after.
            if let context {
                let channel = context.channel
                context.eventLoop.scheduleTask(in: settings.cutOffDelay) { channel.close(promise: nil) }
            }
            return false
        }
    }

    /// Sends a close frame after what is queued; the socket closes when the client answers (or soon after).
    func close(code: WebSocketErrorCode, reason: String) {
        guard !closed, !closeSent, pendingClose == nil, let context else { return }
        pendingClose = (code, reason)
        // Whether or not the client reads what is queued and answers the close, the socket goes then.
        let channel = context.channel
        context.eventLoop.scheduleTask(in: settings.closeTimeout) { channel.close(promise: nil) }
        drain()
    }

    private func sendClose(code: WebSocketErrorCode, reason: String) {
        guard let context else { return }
        closeSent = true
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        // Control frames carry at most 125 bytes.
        data.writeString(String(decoding: reason.utf8.prefix(123), as: UTF8.self))
        write(WebSocketFrame(fin: true, opcode: .connectionClose, data: data), flush: true)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { drain() }
        context.fireChannelWritabilityChanged()
    }

    private func scheduleDrain() {
        guard !drainScheduled, let context else { return }
        drainScheduled = true
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        // After everything else this tick queued: many frames, one flush (one writev).
        context.eventLoop.execute { loopBound.value.drain() }
    }

    /// Moves queued frames into NIO's write buffer while the socket takes them, then flushes once.
    private func drain() {
        drainScheduled = false
        guard let context else { return }
        var wrote = false
        while context.channel.isWritable, let item = buffer.dequeue() {
            let frame: WebSocketFrame
            if deflate != nil, let deflated = item.payload.deflated {
                frame = WebSocketFrame(
                    fin: true, rsv1: true, opcode: item.payload.isBinary ? .binary : .text, data: deflated)
            } else if let deflate, item.payload.bytes.readableBytes >= LoopDeflater.minimumCompressedSize,
                let deflated = try? LoopDeflater.current?.compress(
                    item.payload.bytes, windowBits: deflate.serverWindowBits, allocator: context.channel.allocator)
            {
                frame = WebSocketFrame(
                    fin: true, rsv1: true, opcode: item.payload.isBinary ? .binary : .text, data: deflated)
            } else {
                frame = WebSocketFrame(
                    fin: true, opcode: item.payload.isBinary ? .binary : .text, data: item.payload.bytes)
            }
            context.write(wrapOutboundOut(frame), promise: nil)
            GatewayMetrics.recordWritten(createdAt: item.createdAt)
            wrote = true
        }
        if buffer.count == 0, let close = pendingClose {
            pendingClose = nil
            sendClose(code: close.code, reason: close.reason)  // flushes
        } else if wrote {
            context.flush()
        }
    }

    private func write(_ frame: WebSocketFrame, flush: Bool) {
        guard let context else { return }
        context.write(wrapOutboundOut(frame), promise: nil)
        if flush { context.flush() }
    }

    private func ping() {
        guard !closeSent, pendingClose == nil, let context else { return }
        awaitingPong = true
        write(
            WebSocketFrame(fin: true, opcode: .ping, data: context.channel.allocator.buffer(capacity: 0)), flush: true)
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: settings.pongTimeout) { loopBound.value.pongDeadline() }
    }

    /// The ping's answer time is over: a ping still unanswered is missed; too many in a row close.
    private func pongDeadline() {
        guard awaitingPong, !closed else { return }
        awaitingPong = false
        missedPongs += 1
        if missedPongs >= settings.missedPongLimit {
            close(code: .init(CloseCode.noPong), reason: "no pong to \(missedPongs) pings")
        }
    }
}

extension WebSocketErrorCode {
    init(_ code: CloseCode) { self = .init(codeNumber: Int(code.rawValue)) }
}

/// A connection's outbound side, usable from any thread: calls hop to the connection's event loop.
/// What doors and sessions hold (never the handler itself, which belongs to its loop).
final class WebSocketOutbound: ClientOutbound, Sendable {
    let eventLoop: any EventLoop
    private let handler: NIOLoopBound<WebSocketConnectionHandler>
    private let isOpen = Atomic<Bool>(true)
    let allocator: ByteBufferAllocator

    init(handler: WebSocketConnectionHandler, channel: any NIOCore.Channel) {
        self.eventLoop = channel.eventLoop
        self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        self.allocator = channel.allocator
    }

    /// The handler, for code already running on the connection's loop (the delivery hub).
    func onLoop(_ body: (WebSocketConnectionHandler) -> Void) {
        eventLoop.preconditionInEventLoop()
        body(handler.value)
    }

    func markClosed() { isOpen.store(false, ordering: .relaxed) }

    /// The session caught up with its inbox: read from the socket again.
    func resumeReading() {
        let handler = self.handler
        eventLoop.execute { handler.value.resumeReading() }
    }

    // MARK: ClientOutbound

    @discardableResult
    func enqueue(_ text: String, ephemeral: Bool, createdAt: Int64) -> Bool {
        send(OutboundPayload(bytes: ByteBuffer(string: text)), ephemeral: ephemeral, createdAt: createdAt)
    }

    @discardableResult
    func send(_ payload: OutboundPayload, ephemeral: Bool = false, createdAt: Int64 = 0) -> Bool {
        guard isOpen.load(ordering: .relaxed) else { return false }
        if eventLoop.inEventLoop { return handler.value.enqueue(payload, ephemeral: ephemeral, createdAt: createdAt) }
        let handler = self.handler
        eventLoop.execute { handler.value.enqueue(payload, ephemeral: ephemeral, createdAt: createdAt) }
        return true
    }

    func close(_ code: CloseCode, reason: String) {
        close(.init(code), reason: reason)
    }

    func close(_ code: WebSocketErrorCode, reason: String?) {
        let handler = self.handler
        eventLoop.execute { handler.value.close(code: code, reason: reason ?? "") }
    }

    /// For a door written as a task (`StreamingDoorSession`): queues a message; throws once the socket is closed.
    func write(_ message: WebSocketMessage) throws {
        let queued =
            switch message {
            case .text(let text): enqueue(text, ephemeral: false, createdAt: 0)
            case .binary(let bytes): send(OutboundPayload(bytes: bytes, isBinary: true))
            }
        guard queued else { throw ChannelError.ioOnClosedChannel }
    }

    /// Nothing to do: the socket is gone or going, and the handler releases its queue itself.
    func finish() {}

    /// Runs `body` on the connection's loop every `interval` until the connection closes.
    func every(_ interval: TimeAmount, _ body: @escaping @Sendable () -> Void) {
        let open = self
        eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { task in
            guard open.isOpen.load(ordering: .relaxed) else { return task.cancel() }
            body()
        }
    }
}

extension WebSocketOutbound {
    /// A socket outlives no token: at its `exp` the connection is closed with 4500, so a client gets a
    /// new token and reconnects (docs/protocol.md#connecting). The timer goes with the connection.
    func closeOnExpiry(_ expiresAt: Date, channel: any NIOCore.Channel) {
        let delay = TimeAmount.milliseconds(max(0, Int64(expiresAt.timeIntervalSinceNow * 1000)))
        let expiry = channel.eventLoop.scheduleTask(in: delay) { [self] in
            GatewayMetrics.tokenExpiryCloses.increment()
            close(.unauthorized, reason: "token expired")
        }
        channel.closeFuture.whenComplete { _ in expiry.cancel() }
    }
}
