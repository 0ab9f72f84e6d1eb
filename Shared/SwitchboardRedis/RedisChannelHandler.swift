import NIOCore

/// A command on its way to Redis, with the promise its reply completes.
struct RedisRequest: Sendable {
    var encoded: [UInt8]
    var promise: EventLoopPromise<RESPValue>
}

/// Pipelines commands over one connection: replies complete the queued promises in order. On a
/// subscriber connection, pushed messages go to `onPush` instead.
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private let reader = HiredisReader()
    private var waiting = CircularBuffer<EventLoopPromise<RESPValue>>()
    private let onPush: (@Sendable (_ channel: [UInt8], _ message: [UInt8]) -> Void)?

    init(onPush: (@Sendable (_ channel: [UInt8], _ message: [UInt8]) -> Void)? = nil) {
        self.onPush = onPush
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        waiting.append(request.promise)
        context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: request.encoded)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        do {
            try buffer.withUnsafeReadableBytes { try reader.feed($0) }
            while let reply = try reader.nextReply() {
                dispatch(reply)
            }
        } catch {
            failAll(error)
            context.close(promise: nil)
        }
    }

    private func dispatch(_ reply: RESPValue) {
        if let onPush, case .array(let parts) = reply, parts.count == 3, parts[0].string == "message",
            let channel = parts[1].bytes, let message = parts[2].bytes
        {
            onPush(channel, message)
            return
        }
        guard let promise = waiting.popFirst() else { return }
        if case .error(let message) = reply {
            promise.fail(RedisError(message.hasPrefix("NOSCRIPT") ? .noScript : .server, message))
        } else {
            promise.succeed(reply)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError(.connection, "the connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(RedisError(.connection, "\(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ error: any Error) {
        while let promise = waiting.popFirst() { promise.fail(error) }
    }
}
