import Foundation
import HummingbirdWebSocket
import Logging
import Synchronization
import SwitchboardContracts
import SwitchboardRuntime

/// The chat WebSocket `/ws` (seed 000): commands in, the user's, the system's and the followed
/// conversations' events out. Runs natively on the event-loop core: an idle connection is its
/// handler, its session and two feeds, with no task.
struct ChatSocketDoor: WebSocketDoor {
    let pathPattern = "/ws"
    let admission: Admission
    let hub: DeliveryHub
    let history: ChannelHistory
    let handler: CommandHandler
    let settings: GatewaySettings

    func admit(_ request: UpgradeRequest) async throws -> any WebSocketDoorSession {
        let claims = try await admission.authenticate(token: request.bearerToken)
        try admission.checkAcceptingConnections()
        return ChatSocketSession(door: self, claims: claims)
    }
}

final class ChatSocketSession: WebSocketDoorSession {
    private let door: ChatSocketDoor
    private let claims: SwitchboardClaims
    /// Set once the socket opened and the connection was admitted by the routing table.
    private let admitted = Mutex<ClientSession?>(nil)

    init(door: ChatSocketDoor, claims: SwitchboardClaims) {
        self.door = door
        self.claims = claims
    }

    var expiresAt: Date? { claims.expiresAt }

    func opened(_ socket: WebSocketOutbound) async {
        let session = ClientSession(userID: claims.userID, socket: socket)
        do {
            try await door.admission.admit(session)
        } catch {
            return socket.close(error.closeCode, reason: error.message)
        }
        admitted.withLock { $0 = session }
        // Every client hears its own notifications and system-wide broadcasts.
        for channel in [Channel.user(claims.userID), Channel.system] {
            _ = try? await session.follow(channel, since: nil, hub: door.hub, history: door.history)
        }
    }

    func received(_ message: WebSocketMessage, on socket: WebSocketOutbound) async {
        guard let session = admitted.withLock({ $0 }) else { return }
        await door.handler.handle(message, session: session)
    }

    func closed() async {
        guard let session = admitted.withLock({ $0.take() }) else { return }
        await door.admission.release(session)
        for conversationID in session.conversations {
            await door.handler.announcePresence(FrameType.presenceLeave, of: session, in: conversationID)
        }
        await session.unfollowAll()
    }
}
