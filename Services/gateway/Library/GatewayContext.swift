import Hummingbird
import HummingbirdWebSocket

/// The request context of the gateway's router: plain HTTP routes and WebSocket upgrades share it.
public struct GatewayRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let webSocket: WebSocketHandlerReference<GatewayRequestContext>

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
    }
}
