import Foundation
import Logging
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime

/// What the gateway knows of the AI team: the card the orchestrator announced in Redis, and the
/// current state of a conversation's roles (`RoleStates`), shown to a client that joins.
struct RoleDirectory: Sendable {
    let redis: RedisClient
    let logger: Logger

    /// The orchestrator's team; nil until an orchestrator has started once.
    func team() async throws -> TeamCard? {
        try await TeamCardStore(redis: redis).current()
    }

    /// ROLE_STATUS_SNAPSHOT: every role of the team in team order (IDLE unless the Redis hash says
    /// otherwise), then any other role the hash holds. Not numbered and never stored: it describes the
    /// moment of joining, and the role events that follow it keep it current.
    func snapshot(conversation: String, channel: Channel) async throws -> ServerFrame {
        async let states = RoleStateStore(redis: redis, logger: logger).states(conversation: conversation)
        let card = try await team()
        let current = try await states
        var roles: [RoleStatusSnapshot.Role] = []
        var listed = Set<String>()
        for role in card?.roles ?? [] {
            listed.insert(role.name)
            roles.append(
                .init(
                    role: role.name, status: (current[role.name] ?? .idle).rawValue,
                    responsibility: role.responsibility))
        }
        for (name, status) in current.sorted(by: { $0.key < $1.key }) where !listed.contains(name) {
            roles.append(.init(role: name, status: status.rawValue))
        }
        return try ServerFrame(
            payload: RoleStatusSnapshot(conversationId: conversation, roles: roles, team: card?.name),
            channel: channel.description)
    }
}
