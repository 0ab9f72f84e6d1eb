import SwitchboardContracts
import SwitchboardRedis

/// Whether a run will never hear from the roles it waits for: each awaited task's done marker says its
/// result went out on the bus a while ago (`TaskJournal.Lease.finish` sets it once the broker has the
/// result), yet the run never got it. A broker that lost messages it had acknowledged does this (Tansu
/// restarted with its in-memory log, the run's last result not yet read). Without this check the run
/// holds its conversation busy until it goes stale (`CollaborationEngine.staleAfterMs`, 10 minutes),
/// and the user's next messages wait silently behind it.
struct LostResults: Sendable {
    /// Far longer than a result takes from the bus to the orchestrator, backlog of seconds included; a
    /// result that is only late arrives after its run was abandoned and is ignored like a repeat.
    static let grace: Int64 = 5_000

    let redis: RedisClient

    func areLost(for run: CollaborationRun, now: Int64) async throws -> Bool {
        var doneAt: [Int64?] = []
        for task in CollaborationEngine.awaitedTaskIDs(run) {
            let marker = try await redis.send("GET", RedisArgument(Keyspace.Task.done(task)))
            doneAt.append(marker.string.flatMap { Int64($0) })
        }
        return Self.areLost(doneAt: doneAt, now: now)
    }

    /// Lost when every awaited task is done (a marker without a time, from an older agent-worker, is
    /// not counted as done) and the last finished more than `grace` ago.
    static func areLost(doneAt: [Int64?], now: Int64) -> Bool {
        !doneAt.isEmpty && doneAt.allSatisfy { finished in finished.map { now - $0 > grace } ?? false }
    }
}
