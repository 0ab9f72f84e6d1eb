import NIOCore

/// A command on its way to Redis, with the promise its reply completes; none for a command whose
/// answer arrives as a push (SUNSUBSCRIBE).
struct RedisRequest: Sendable {
    var encoded: [UInt8]
    var promise: EventLoopPromise<RESPValue>?
}

/// What a subscriber connection receives without having asked.
enum RedisPush: Sendable, Equatable {
    /// A message on a channel (`message`, or `smessage` for a shard channel).
    case message(channel: [UInt8], message: [UInt8])
    /// The server dropped a shard channel (its slot moved, or the node stopped serving it), or confirmed
    /// our own SUNSUBSCRIBE: the subscriber decides which from what it still wants.
    case shardUnsubscribed(channel: [UInt8])

    init?(_ reply: RESPValue) {
        guard case .array(let parts) = reply, let kind = parts.first?.string,
            let channel = parts.dropFirst().first?.bytes
        else { return nil }
        switch kind {
        case "message", "smessage":
            guard parts.count == 3, let message = parts[2].bytes else { return nil }
            self = .message(channel: channel, message: message)
        case "sunsubscribe":
            self = .shardUnsubscribed(channel: channel)
        default:
            return nil
        }
    }
}

/// Pipelines commands over one connection: replies complete the queued promises in order. On a
/// subscriber connection, pushed messages go to `onPush` instead.
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    private let reader = HiredisReader()
    private var waiting = CircularBuffer<EventLoopPromise<RESPValue>>()
    private let onPush: (@Sendable (RedisPush) -> Void)?

    init(onPush: (@Sendable (RedisPush) -> Void)? = nil) {
        self.onPush = onPush
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let promise = request.promise { waiting.append(promise) }
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
        if let onPush, let push = RedisPush(reply) {
            onPush(push)
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
