import SwitchboardContracts
import SwitchboardRedis

/// How the orchestrator (its one writer) stops a collaboration run's roles on every agent-worker: a
/// key the workers check when a task starts, and a pub/sub message that stops the tasks already running.
public struct RunControl: Sendable {
    /// The channel every agent-worker follows: each message is a stopped run's id.
    public static let stopChannel = Keyspace.PubSub.runStops
    /// Longer than any run's tasks wait in Kafka.
    static let stoppedTTLMilliseconds: Int64 = 3600 * 1000

    let redis: RedisClient

    public init(redis: RedisClient) {
        self.redis = redis
    }

    /// The key first, so a task that starts after the message still sees the stop.
    public func stop(runID: String) async throws {
        try await redis.send(
            "SET", RedisArgument(Keyspace.Run.stopped(runID)), "1", "PX", RedisArgument(Self.stoppedTTLMilliseconds))
        try await redis.send("PUBLISH", RedisArgument(Self.stopChannel), RedisArgument(runID))
    }

    public func isStopped(runID: String) async throws -> Bool {
        try await redis.send("EXISTS", RedisArgument(Keyspace.Run.stopped(runID))).integer == 1
    }
}
