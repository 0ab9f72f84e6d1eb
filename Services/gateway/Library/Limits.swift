import Metrics
import NIOCore
import NIOHTTPTypes

/// Bounds on what a client chooses the size of, each in one place (docs/protocol.md#limits and
/// docs/configuration.md#built-in-limits). Configurable limits (the HTTP idle and body timeouts among
/// them) live in `GatewaySettings`.
enum GatewayLimits {
    /// Conversations one connection follows at once (its user and system channels aside); more:
    /// `LIMIT_EXCEEDED`. Each followed channel costs a feed and a Redis subscription share.
    static let conversationsPerConnection = 100
    /// A client's ids (command `id`, `clientMessageId`): 1–128 characters, else `INVALID_ARGUMENT`.
    static let clientIDLength = 1...128
    /// Items waiting for a voice device (paced audio frames, JSON): 5000 ≈ 5 min of 60 ms audio. A
    /// device that falls that far behind is closed with 4002 rather than held in memory.
    static let deviceOutboundItems = 5000
    /// Audio packets a device may send per second (60 ms frames are ~17/s), with a burst for a
    /// network stall catching up; more: closed with 4504.
    static let deviceUplinkPacketsPerSecond = 50.0
    static let deviceUplinkBurst = 100.0
    static func isValidClientID(_ id: String) -> Bool {
        clientIDLength.contains(id.count)
    }
}

/// A token bucket for one connection's packets: `rate` per second, up to `burst` at once. Pure, so
/// it is tested without a clock.
struct PacketRate: Sendable {
    let rate: Double
    let burst: Double
    private var tokens: Double
    private var last: ContinuousClock.Instant?

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
        self.tokens = burst
    }

    /// False when the packet at `now` is over the rate.
    mutating func allow(at now: ContinuousClock.Instant) -> Bool {
        if let last {
            let elapsed = now - last
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            tokens = min(burst, tokens + seconds * rate)
        }
        last = now
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// Closes a connection whose request body has not ended `deadline` after its head: the handshake
/// deadline covers the head, Hummingbird's idle timeout a silent connection, this a body trickled a
/// byte at a time (slowloris), which would otherwise hold a connection and a request task for ever.
final class RequestBodyDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private let deadline: TimeAmount
    private var timer: Scheduled<Void>?

    init(deadline: TimeAmount) {
        self.deadline = deadline
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            timer?.cancel()
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            timer = context.eventLoop.assumeIsolated().scheduleTask(in: deadline) {
                GatewayMetrics.bodyTimeouts.increment()
                loopBound.value.close(promise: nil)
            }
        case .end:
            timer?.cancel()
            timer = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }
}
