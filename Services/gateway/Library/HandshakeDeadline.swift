import Hummingbird
import HummingbirdCore
import Logging
import Metrics
import NIOCore
import NIOSSL

/// Wraps the server's child channel so every new connection must send a complete HTTP request head
/// (where its token is) within `deadline`. A socket that connects and says nothing, or trickles
/// bytes, is never authenticated and would otherwise hold its memory forever.
struct HandshakeDeadlineChannel<Base: ServerChildChannel>: ServerChildChannel {
    let base: Base
    let deadline: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Base.Value> {
        channel.eventLoop.makeCompletedFuture {
            // Appended: after TLS, when there is TLS, so it reads the request head in clear.
            try channel.pipeline.syncOperations.addHandler(HandshakeDeadlineHandler(deadline: deadline))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Base.Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

/// Closes the connection unless the first request head (up to its blank line) arrives in time,
/// then steps out of the pipeline.
final class HandshakeDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let deadline: TimeAmount
    private var timer: Scheduled<Void>?
    /// The last bytes seen, so a blank line split across reads is still found.
    private var tail: [UInt8] = []

    init(deadline: TimeAmount) {
        self.deadline = deadline
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: deadline) {
            GatewayMetrics.handshakeTimeouts.increment()
            loopBound.value.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let complete = Self.endsHead(tail + buffer.readableBytesView)
        if !complete {
            tail = Array((tail + buffer.readableBytesView).suffix(3))
        }
        context.fireChannelRead(data)
        if complete {
            timer?.cancel()
            timer = nil
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    static func endsHead(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= 4 else { return false }
        for index in 0...(bytes.count - 4)
        where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
            return true
        }
        return false
    }
}

/// TLS on every new connection before anything else reads it, when the gateway has a certificate.
struct TLSTermination<Base: ServerChildChannel>: ServerChildChannel {
    let base: Base
    let context: NIOSSLContext?

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Base.Value> {
        guard let context else { return base.setup(channel: channel, logger: logger) }
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Base.Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
