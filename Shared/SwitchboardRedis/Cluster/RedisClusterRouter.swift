import Logging
import NIOCore
import Synchronization
import SwitchboardContracts

/// Follows a Redis Cluster for `RedisClient`: the slot map (from `CLUSTER SHARDS`), a connection pool per
/// primary, every command sent to its key's primary, `MOVED`/`ASK` followed, the map found again when a
/// node fails or fails over.
final class RedisClusterRouter: Sendable {
    private struct State {
        var map = RedisSlotMap()
        var pools: [RedisNodeAddress: RedisNodePool] = [:]
        var discovery: Task<Void, any Error>?
    }

    private let configuration: RedisClientConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    private let state = Mutex(State())

    init(configuration: RedisClientConfiguration, group: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
    }

    private var endpoint: RedisEndpoint { configuration.endpoint }

    // MARK: Commands

    /// Runs one command on its key's primary (any primary for a keyless one). With `script`, a NOSCRIPT
    /// loads the script on that node and runs the command again.
    func send(_ command: [RedisArgument], script: RedisScript? = nil) async throws -> RESPValue {
        var retry = Retry(configuration: configuration)
        var target = RedisCommandRoute(command).target
        var loadedScript = false
        while true {
            let node = try await node(for: target, retry: &retry)
            let connection: RedisConnection
            do {
                connection = try await pool(node).connection()
            } catch {
                // Nothing was sent: find the slot's primary again (it may have failed over) and retry.
                try await retry.wait(after: error)
                try? await discover()
                continue
            }
            do {
                if case .asking = target {
                    return try await connection.pipeline([["ASKING"], command])[1]
                }
                return try await connection.send(command)
            } catch let error as RedisError {
                if error.code == .noScript, let script, !loadedScript {
                    loadedScript = true
                    try await RedisClient.load(script, on: connection)
                    continue
                }
                target = try await next(after: error, from: node, route: RedisCommandRoute(command), retry: &retry)
            }
        }
    }

    /// Splits the pipeline by primary, one write to each, and puts the answers back in order. Commands
    /// redirected or never sent run again one by one, in order, through `send`. A slot's commands keep
    /// their order (one channel's events their offsets): all are routed with one slot map, so they share a
    /// connection, and once one of them fails for good the later ones are not sent again.
    func pipeline(_ commands: [[RedisArgument]]) async throws -> [RESPValue] {
        var retry = Retry(configuration: configuration)
        let routes = commands.map(RedisCommandRoute.init)
        let plan = RedisPipelinePlan(nodes: try await nodes(for: routes, retry: &retry))
        let answers = await withTaskGroup(of: (Int, [Result<RESPValue, any Error>]).self) { group in
            for (index, batch) in plan.batches.enumerated() {
                let batchCommands = batch.positions.map { commands[$0] }
                group.addTask {
                    do {
                        let connection = try await self.pool(batch.node).connection()
                        return (index, await connection.pipelineResults(batchCommands))
                    } catch {
                        return (index, batchCommands.map { _ in .failure(NotSent(error: error)) })
                    }
                }
            }
            var answers = [[Result<RESPValue, any Error>]](repeating: [], count: plan.batches.count)
            for await (index, batchAnswers) in group { answers[index] = batchAnswers }
            return answers
        }
        var replies = plan.merge(answers, count: commands.count)
        var resends = RedisPipelineResends<RedisCommandRoute>()
        for index in replies.indices {
            guard case .failure(let error) = replies[index] else {
                if resends.isHalted(routes[index]) {
                    // Only a slot migrating (ASK for some keys of a slot) gets here: say so, it is rare.
                    logger.warning("redis pipeline ran a command after an earlier one of its slot failed")
                }
                continue
            }
            guard resends.mayResend(routes[index], retriable: Self.isWorthAnotherNode(error)) else { continue }
            do {
                replies[index] = .success(try await send(commands[index]))
            } catch {
                replies[index] = .failure(error)
                resends.failed(routes[index])
            }
        }
        return try replies.map { try $0.get() }
    }

    /// Each command's primary, all from one slot map (keyless commands all to one primary), waiting
    /// within the retry window while a slot has no primary.
    private func nodes(for routes: [RedisCommandRoute], retry: inout Retry) async throws -> [RedisNodeAddress] {
        while true {
            let map = try await currentMap(retry: &retry)
            let anyPrimary = map.primaries.randomElement()
            let nodes = routes.compactMap { route -> RedisNodeAddress? in
                switch route {
                case .anyNode: anyPrimary
                case .slot(let slot): map.primary(for: slot)
                }
            }
            if nodes.count == routes.count { return nodes }
            try await retry.wait(after: RedisError(.server, "CLUSTERDOWN no primary serves a slot yet"))
            try? await discover()
        }
    }

    /// Loads a script on every primary, so a run anywhere finds it.
    func loadEverywhere(_ script: RedisScript) async throws {
        var retry = Retry(configuration: configuration)
        while true {
            let primaries = try await currentMap(retry: &retry).primaries
            do {
                for primary in primaries {
                    try await pool(primary).withConnection { try await RedisClient.load(script, on: $0) }
                }
                return
            } catch {
                try await retry.wait(after: error)
                try? await discover()
            }
        }
    }

    func close() async {
        let pools = state.withLock { state in
            defer { state.pools = [:] }
            return Array(state.pools.values)
        }
        for pool in pools { await pool.close() }
    }

    // MARK: Slot map

    enum Target {
        case route(RedisCommandRoute)
        /// Once, to the node an `-ASK` named, after `ASKING`.
        case asking(RedisNodeAddress)
    }

    /// Any primary, the seeds until the map is known.
    func anyPrimary() async throws -> RedisNodeAddress {
        var retry = Retry(configuration: configuration)
        return try await node(for: .route(.anyNode), retry: &retry)
    }

    /// The primary serving `slot`, waiting (within the retry window) while no primary serves it.
    func primary(forSlot slot: Int) async throws -> RedisNodeAddress {
        var retry = Retry(configuration: configuration)
        return try await node(for: .route(.slot(slot)), retry: &retry)
    }

    private func node(for target: Target, retry: inout Retry) async throws -> RedisNodeAddress {
        while true {
            switch target {
            case .asking(let node):
                return node
            case .route(.anyNode):
                if let primary = try await currentMap(retry: &retry).primaries.randomElement() { return primary }
            case .route(.slot(let slot)):
                if let primary = try await currentMap(retry: &retry).primary(for: slot) { return primary }
            }
            try await retry.wait(after: RedisError(.server, "CLUSTERDOWN no primary serves the slot yet"))
            try? await discover()
        }
    }

    /// What to do after an error reply: follow a redirect, wait out a failover, or give up.
    private func next(
        after error: RedisError, from node: RedisNodeAddress, route: RedisCommandRoute, retry: inout Retry
    ) async throws -> Target {
        if let redirect = RedisRedirect(error.reason) {
            try retry.redirected(error)
            switch redirect {
            case .moved(let slot, let to):
                learn(slot, movedTo: to, from: node)
                return .route(route)
            case .ask(_, let to):
                return .asking(to.host.isEmpty ? RedisNodeAddress(host: node.host, port: to.port) : to)
            }
        }
        if Self.isTransient(error) {
            try await retry.wait(after: error)
            try? await discover()
            return .route(route)
        }
        if error.code == .connection {
            // The node went away with the command in flight: it may have run, so it is not sent again,
            // but the next command finds the slot's primary anew.
            Task { try? await self.discover() }
        }
        throw error
    }

    /// A `MOVED` names the slot's owner now: the map takes it at once.
    private func learn(_ slot: Int, movedTo to: RedisNodeAddress, from node: RedisNodeAddress) {
        let owner = to.host.isEmpty ? RedisNodeAddress(host: node.host, port: to.port) : to
        state.withLock { $0.map.assign(slot...slot, to: owner) }
        // One slot moved is often a whole range resharded or failed over: learn the rest too.
        Task { try? await self.discover() }
    }

    /// Whether `node` answers for `key`'s slot as its primary: a replica, or a node that gave the slot
    /// away, answers `MOVED`, which the map learns. (During a migration the node still owns the slot.)
    func isPrimary(_ node: RedisNodeAddress, for key: String) async throws -> Bool {
        do {
            _ = try await pool(node).withConnection { try await $0.send(["EXISTS", RedisArgument(key)]) }
            return true
        } catch let error as RedisError {
            switch RedisRedirect(error.reason) {
            case .moved(let slot, let to):
                learn(slot, movedTo: to, from: node)
                return false
            case .ask: return true
            case nil: throw error
            }
        }
    }

    private func currentMap(retry: inout Retry) async throws -> RedisSlotMap {
        while true {
            let map = state.withLock { $0.map }
            if !map.primaries.isEmpty { return map }
            do {
                try await discover()
            } catch {
                try await retry.wait(after: error)
            }
        }
    }

    /// Reads the slot map from the first node that answers, primaries known so far first, then the seeds.
    /// Concurrent callers share one discovery.
    func discover() async throws {
        let task = state.withLock { state -> Task<Void, any Error> in
            if let running = state.discovery { return running }
            let task = Task { try await self.readSlotMap() }
            state.discovery = task
            return task
        }
        defer { state.withLock { if $0.discovery == task { $0.discovery = nil } } }
        try await task.value
    }

    private func readSlotMap() async throws {
        let known = state.withLock { $0.map.primaries }
        var candidates = known
        for seed in endpoint.clusterSeeds where !candidates.contains(seed) { candidates.append(seed) }
        var lastError: any Error = RedisError(.connection, "no cluster seed configured")
        for candidate in candidates {
            do {
                let map = try await pool(candidate).withConnection { connection in
                    do {
                        return try RedisSlotMap(
                            shards: try await connection.send(["CLUSTER", "SHARDS"]), queried: candidate,
                            tls: endpoint.usesTLS)
                    } catch let error as RedisError where error.code == .server && !Self.isTransient(error) {
                        // Before Redis 7.0 there is no CLUSTER SHARDS.
                        return try RedisSlotMap(
                            slots: try await connection.send(["CLUSTER", "SLOTS"]), queried: candidate)
                    }
                }
                guard !map.primaries.isEmpty else {
                    lastError = RedisError(.server, "CLUSTERDOWN \(candidate) knows no primary")
                    continue
                }
                let changed = state.withLock { state in
                    defer { state.map = map }
                    return state.map != map
                }
                if changed {
                    logger.info(
                        "redis cluster slot map", metadata: ["redis.primaries": "\(map.primaries)"])
                }
                return
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    func pool(_ node: RedisNodeAddress) -> RedisNodePool {
        state.withLock { state in
            if let pool = state.pools[node] { return pool }
            var nodeLogger = self.logger
            nodeLogger[metadataKey: "redis.node"] = "\(node)"
            let pool = RedisNodePool(
                endpoint: endpoint.node(node), configuration: configuration, group: group, logger: nodeLogger)
            state.pools[node] = pool
            return pool
        }
    }

    // MARK: Errors

    /// The cluster is between states (a failover, a slot migrating): the same command succeeds soon.
    static func isTransient(_ error: RedisError) -> Bool {
        guard error.code == .server else { return false }
        return ["CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING"].contains { error.reason.hasPrefix($0) }
    }

    /// A pipelined command worth sending again on its own: redirected, refused for a moment, or never
    /// sent.
    private static func isWorthAnotherNode(_ error: any Error) -> Bool {
        if error is NotSent { return true }
        guard let error = error as? RedisError else { return false }
        return RedisRedirect(error.reason) != nil || isTransient(error)
    }

    /// A pipeline batch whose node could not be reached: none of its commands ran.
    private struct NotSent: Error {
        var error: any Error
    }

    /// The redirects and the waiting one command may spend.
    struct Retry {
        private let maxRedirects: Int
        private let deadline: ContinuousClock.Instant
        private let backoff: Backoff
        private var redirects = 0
        private var waits = 0

        init(configuration: RedisClientConfiguration) {
            maxRedirects = configuration.maxRedirects
            deadline = .now + configuration.clusterRetryWindow
            backoff = configuration.reconnectBackoff
        }

        mutating func redirected(_ error: RedisError) throws(RedisError) {
            redirects += 1
            if redirects > maxRedirects {
                throw RedisError(.server, "more than \(maxRedirects) redirects, last: \(error.reason)")
            }
        }

        /// Sleeps before the next try, or throws `error` once the window has passed.
        mutating func wait(after error: any Error) async throws {
            guard ContinuousClock.now < deadline else { throw error }
            waits += 1
            try await Task.sleep(for: max(backoff.delay(attempt: waits), .milliseconds(20)))
        }
    }
}

extension RedisCommandRoute {
    var target: RedisClusterRouter.Target { .route(self) }
}
