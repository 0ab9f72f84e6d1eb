import Foundation
import Logging
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardRedis

/// Every service instance's heartbeat in Redis, and the cluster status derived from them: the
/// SYSTEM_STATUS of seed 000 (`operational`, `degraded`, `maintenance`).
public struct SystemStatus: Sendable, Equatable {
    public struct ServiceState: Sendable, Equatable {
        public var name: String
        public var readyInstances: Int
        public var instances: Int
    }

    public var status: String
    public var services: [ServiceState]
    public var message: String?

    /// An instance that has not beaten for this long is gone.
    public static let staleAfterSeconds = 15

    /// `operational` when every service kind has a ready instance, `maintenance` while an operator
    /// says so (`SET sb:{maintenance} "<message>"`), `degraded` otherwise.
    public static func read(from redis: RedisClient, now: Int = Int(Date().timeIntervalSince1970)) async throws
        -> SystemStatus
    {
        let replies = try await redis.pipeline([
            ["HGETALL", RedisArgument(Keyspace.Cluster.services)],
            ["GET", RedisArgument(Keyspace.Cluster.maintenance)],
        ])
        var byService: [String: ServiceState] = [:]
        for kind in ServiceKind.allCases {
            byService[kind.rawValue] = ServiceState(name: kind.rawValue, readyInstances: 0, instances: 0)
        }
        let fields = replies[0].array ?? []
        var stale: [RedisArgument] = []
        for index in stride(from: 0, to: fields.count - 1, by: 2) {
            guard let instance = fields[index].string, let value = fields[index + 1].string else { continue }
            let parts = value.split(separator: " ")
            guard parts.count == 3, let ready = Int(parts[1]), let seen = Int(parts[2]) else { continue }
            if now - seen > staleAfterSeconds {
                if now - seen > 3600 { stale.append(RedisArgument(instance)) }
                continue
            }
            byService[String(parts[0]), default: ServiceState(name: String(parts[0]), readyInstances: 0, instances: 0)]
                .instances += 1
            if ready == 1 { byService[String(parts[0])]?.readyInstances += 1 }
        }
        if !stale.isEmpty { _ = try? await redis.send(["HDEL", RedisArgument(Keyspace.Cluster.services)] + stale) }
        let services = byService.values.sorted { $0.name < $1.name }
        let maintenance = replies[1].string
        let status =
            maintenance != nil
            ? "maintenance" : services.allSatisfy { $0.readyInstances > 0 } ? "operational" : "degraded"
        return SystemStatus(status: status, services: services, message: maintenance)
    }

    /// The SYSTEM_STATUS frame's data: `{status, services: [{name, readyInstances, instances}], message?}`.
    public var data: JSONValue {
        var object: [String: JSONValue] = [
            "status": .string(status),
            "services": .array(
                services.map {
                    [
                        "name": .string($0.name), "readyInstances": .number(Double($0.readyInstances)),
                        "instances": .number(Double($0.instances)),
                    ]
                }),
        ]
        if let message { object["message"] = .string(message) }
        return .object(object)
    }
}

/// Writes this instance's heartbeat (`<service> <ready 0|1> <unix seconds>`) every few seconds, and
/// removes it at shutdown so the cluster status changes at once.
struct HeartbeatService: Service {
    let context: ServiceContext
    var interval: Duration = .seconds(5)

    func run() async throws {
        let redis = context.redis
        let instance = context.configuration.instanceID
        // Cancellation ends the loop too (a sibling service failed): the sleep below then returns at once.
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let ready = await context.readiness.evaluate().ready
            let line = "\(context.configuration.service.rawValue) \(ready ? 1 : 0) \(Int(Date().timeIntervalSince1970))"
            do {
                try await redis.send(
                    "HSET", RedisArgument(Keyspace.Cluster.services), RedisArgument(instance), RedisArgument(line))
            } catch {
                context.logger.debug("heartbeat failed", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
        _ = try? await redis.send("HDEL", RedisArgument(Keyspace.Cluster.services), RedisArgument(instance))
    }
}
