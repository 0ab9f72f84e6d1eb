import Foundation
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardStore

/// A conversation's record as JSON in a Redis hash with a version, replaced only by compare-and-set,
/// and beside it, per input, the effects decided but not yet all published.
struct RecordStore: Sendable {
    struct ConflictError: Error, CustomStringConvertible {
        var description: String { "the conversation's record kept changing; giving up this attempt" }
    }

    /// One input's effects and the seed of their event ids.
    struct Outbox: Codable, Sendable, Equatable {
        var seed: String
        var effects: [CollaborationEffect]
    }

    struct Loaded {
        var record: ConversationRecord?
        var version: Int64
        var outbox: Outbox?
    }

    let redis: RedisClient
    var ttlMilliseconds: Int64 = 24 * 3600 * 1000

    /// The record and its outbox: one hash tag, so one script reads or writes both.
    static func keys(_ conversation: String) -> [RedisArgument] {
        [
            RedisArgument(Keyspace.Conversation.record(conversation)),
            RedisArgument(Keyspace.Conversation.outbox(conversation)),
        ]
    }

    func load(conversation: String, input: UUID) async throws -> Loaded {
        let reply = try await redis.run(
            Self.loadScript,
            keys: Self.keys(conversation),
            arguments: [RedisArgument(input.uuidString)])
        let values = reply.array ?? []
        guard values.count == 3 else { throw RedisError(.protocolViolation, "record load answered \(reply)") }
        var loaded = Loaded(record: nil, version: values[0].integer ?? 0, outbox: nil)
        if let bytes = values[1].bytes {
            loaded.record = try JSONDecoder().decode(ConversationRecord.self, from: Data(bytes))
        }
        if let bytes = values[2].bytes { loaded.outbox = try JSONDecoder().decode(Outbox.self, from: Data(bytes)) }
        return loaded
    }

    /// False when another instance stored a newer version first (nothing is written then).
    func store(
        _ record: ConversationRecord, outbox: Outbox?, conversation: String, input: UUID, expectedVersion: Int64
    ) async throws -> Bool {
        let json = try JSONEncoder().encode(record)
        let outboxJSON = try outbox.map { try JSONEncoder().encode($0) } ?? Data()
        let reply = try await redis.run(
            Self.compareAndSet,
            keys: Self.keys(conversation),
            arguments: [
                RedisArgument(expectedVersion), RedisArgument(bytes: Array(json)), RedisArgument(ttlMilliseconds),
                RedisArgument(input.uuidString), RedisArgument(bytes: Array(outboxJSON)),
            ])
        return reply.integer == 1
    }

    func clearOutbox(conversation: String, input: UUID) async throws {
        try await redis.send(
            "HDEL", RedisArgument(Keyspace.Conversation.outbox(conversation)), RedisArgument(input.uuidString))
    }

    static let loadScript = RedisScript(
        """
        return {redis.call('HGET', KEYS[1], 'v') or '0', redis.call('HGET', KEYS[1], 's'), redis.call('HGET', KEYS[2], ARGV[1])}
        """)

    /// ARGV: expected version, record JSON, TTL ms, input id, outbox JSON (empty: none).
    static let compareAndSet = RedisScript(
        """
        local v = redis.call('HGET', KEYS[1], 'v') or '0'
        if v ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'v', tostring(tonumber(v) + 1), 's', ARGV[2])
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
        if ARGV[5] ~= '' then
          redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
          redis.call('PEXPIRE', KEYS[2], ARGV[3])
        end
        return 1
        """)
}
