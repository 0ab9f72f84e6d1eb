import Foundation
import Logging
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardStore

/// Writes the team's card to Redis (no expiry: the team outlives any one orchestrator instance), retrying
/// until Redis answers. The gateways check REQUEST_ROLE_FOCUS, snapshot role states and list
/// `/v1/models` from it.
struct TeamAnnouncer: Service {
    let team: Team
    let redis: RedisClient
    let logger: Logger

    var card: TeamCard {
        TeamCard(
            name: team.name, roles: team.roles.map { TeamCard.Role(name: $0.name, responsibility: $0.responsibility) },
            finalRole: team.finalRole)
    }

    func run() async throws {
        let store = TeamCardStore(redis: redis)
        var attempt = 0
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await store.announce(card)
                break
            } catch {
                attempt += 1
                if attempt == 1 { logger.warning("cannot announce the team yet", metadata: ["error": "\(error)"]) }
                try? await Task.sleep(for: .milliseconds(200 * min(attempt, 10)))
            }
        }
        try? await gracefulShutdown()
    }
}
