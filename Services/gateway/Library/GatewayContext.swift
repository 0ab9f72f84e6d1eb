import Hummingbird
import NIOCore

/// The request context of the gateway's router (WebSocket upgrades are taken before it: see
/// `GatewayChildChannel`).
public struct GatewayRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection, so a client that stopped reading can be cut off (see `OutboundQueue`).
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

extension GatewayRequestContext {
    /// Closes the connection a moment from now: for a client that fell behind and may have stopped
    /// reading altogether, when not even the close frame can be written. The moment lets a client
    /// that still reads receive that close frame first.
    var cutOff: @Sendable () -> Void {
        let channel = self.channel
        return { channel.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) } }
    }

    /// Bounds the kernel's send buffer of the connection (`bytes` 0: leave autotuning on).
    func limitSendBuffer(to bytes: Int) async {
        guard bytes > 0 else { return }
        try? await channel.setOption(ChannelOptions.socketOption(.so_sndbuf), value: SocketOptionValue(bytes))
    }
}
