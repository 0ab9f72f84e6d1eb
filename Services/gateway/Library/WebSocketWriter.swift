import HummingbirdWebSocket
import Logging
import NIOWebSocket
import SwitchboardContracts

extension ClientSession {
    /// Writes this session's queued frames to a WebSocket, in order, until the queue ends or asks
    /// to close (then it sends that close frame). Every WebSocket endpoint's writer task runs this.
    func writeFrames(to outbound: WebSocketOutboundWriter, logger: Logger) async throws {
        while let item = await self.outbound.next() {
            switch item {
            case .frame(let text, let createdAt):
                try await outbound.write(.text(text))
                DeliveryMetrics.recordWritten(createdAt: createdAt)
            case .close(let code, let reason):
                logger.debug("closing client", metadata: ["ws.close_code": "\(code.rawValue)"])
                try await outbound.close(.unknown(code.rawValue), reason: reason)
                return
            }
        }
    }
}
