import Foundation
import Logging
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime

/// Publishes SYSTEM_STATUS to the system channel whenever the cluster status changes. One notifier
/// instance at a time does it (a lease in Redis); the last published status is kept in Redis too, so a
/// new leader does not repeat it.
struct SystemStatusPublisher: Service {
    let context: ServiceContext
    var interval: Duration = .seconds(3)

    /// Takes or renews the lease for `instance`: one script, so two instances never both hold it.
    static let leaseScript = RedisScript(
        """
        local holder = redis.call('GET', KEYS[1])
        if holder == false or holder == ARGV[1] then
          redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
          return 1
        end
        return 0
        """)

    func run() async throws {
        let redis = context.redis
        // Cancellation ends the loop too (a sibling service failed): the sleep below then returns at once.
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await publishIfChanged(redis)
            } catch {
                context.logger.debug("system status not published", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }

    private func publishIfChanged(_ redis: RedisClient) async throws {
        let lease = try await redis.run(
            Self.leaseScript, keys: [RedisArgument(Keyspace.Cluster.systemStatusPublisher)],
            arguments: [RedisArgument(context.configuration.instanceID), RedisArgument(10)])
        guard lease.integer == 1 else { return }
        let status = try await SystemStatus.read(from: redis)
        // Sorted keys: a dictionary's order differs from one instance to the next, and an unsorted
        // encoding never equalled the last one, so an unchanged status went out every 3 s.
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let encoded = String(decoding: try encoder.encode(status.data), as: UTF8.self)
        guard try await redis.send("GET", RedisArgument(Keyspace.Cluster.systemStatusLast)).string != encoded else {
            return
        }
        let event = ClientEvent(channel: .system, frameType: FrameType.systemStatus, data: status.data)
        try await context.publish(
            context.envelope(event, routingKey: Channel.system.description), to: Topics.clientEvents)
        try await redis.send("SET", RedisArgument(Keyspace.Cluster.systemStatusLast), RedisArgument(encoded))
        context.logger.info("system status", metadata: ["system.status": "\(status.status)"])
    }
}
