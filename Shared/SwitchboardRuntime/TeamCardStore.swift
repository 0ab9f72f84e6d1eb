import Foundation
import SwitchboardContracts
import SwitchboardRedis

/// The AI team as the orchestrator (its one writer) announces it when it starts, for gateways to show.
public struct TeamCardStore: Sendable {
    let redis: RedisClient

    public init(redis: RedisClient) {
        self.redis = redis
    }

    public func announce(_ card: TeamCard) async throws {
        try await redis.send(
            "SET", RedisArgument(Keyspace.Cluster.team), RedisArgument(bytes: Array(try JSONEncoder().encode(card))))
    }

    /// The announced team; nil until an orchestrator has started once (or when the card is unreadable).
    public func current() async throws -> TeamCard? {
        guard let bytes = try await redis.send("GET", RedisArgument(Keyspace.Cluster.team)).bytes else { return nil }
        return try? JSONDecoder().decode(TeamCard.self, from: Data(bytes))
    }
}
