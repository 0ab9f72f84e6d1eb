import Testing

@testable import SwitchboardRedis

/// The pure parts of following a Redis Cluster: slots, where a command's key is, redirects, the slot map
/// and pipelines split by node.
struct RedisClusterRoutingTests {
    @Test func slotsAreCRC16OfTheKeyOrItsHashTag() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        #expect(RedisHashSlot.crc16(Array("123456789".utf8)[...]) == 0x31C3)
        #expect(RedisHashSlot.of("foo") == 12182)
        #expect(RedisHashSlot.of("bar") == 5061)
        #expect(RedisHashSlot.of("{user1000}.following") == RedisHashSlot.of("{user1000}.followers"))
        #expect(RedisHashSlot.of("{user1000}.following") == RedisHashSlot.of("user1000"))
        // Only the first `{…}` counts, an empty one does not, and an unclosed one is no tag.
        #expect(RedisHashSlot.of("foo{bar}{zap}") == RedisHashSlot.of("bar"))
        #expect(RedisHashSlot.of("foo{}{bar}") == 8363)
        #expect(RedisHashSlot.hashTag(of: Array("foo{}{bar}".utf8)) == nil)
        #expect(RedisHashSlot.hashTag(of: Array("foo{bar".utf8)) == nil)
        #expect(RedisHashSlot.of("") == 0)
        // A client channel shares its keys' slot, so the notifier's script may SPUBLISH it.
        #expect(RedisHashSlot.of("sb:{conversation:c1}:live") == RedisHashSlot.of("sb:{conversation:c1}:meta"))
        #expect(RedisHashSlot.isShardChannel("sb:{conversation:c1}:live"))
        #expect(!RedisHashSlot.isShardChannel("sb:runs:stop"))
    }

    @Test func commandsAreRoutedByTheirKey() {
        func route(_ command: RedisArgument...) -> RedisCommandRoute { RedisCommandRoute(command) }
        #expect(route("GET", "foo") == .slot(12182))
        #expect(route("hset", "{user1000}.a", "f", "v") == .slot(RedisHashSlot.of("user1000")))
        #expect(route("EVALSHA", "abc", "2", "{t}:a", "{t}:b", "arg") == .slot(RedisHashSlot.of("t")))
        #expect(route("FCALL", "fn", "1", "foo") == .slot(12182))
        #expect(route("EVAL", "return 1", "0", "foo") == .anyNode)
        #expect(route("XREAD", "COUNT", "2", "STREAMS", "foo", "0") == .slot(12182))
        #expect(route("XREADGROUP", "GROUP", "g", "c", "streams", "bar", ">") == .slot(5061))
        #expect(route("SPUBLISH", "foo", "message") == .slot(12182))
        #expect(route("PING") == .anyNode)
        #expect(route("INFO", "memory") == .anyNode)
        #expect(route("SCRIPT", "LOAD", "return 1") == .anyNode)
        #expect(route("PUBLISH", "foo", "m") == .anyNode)
    }

    @Test func movedAndAskNameTheSlotAndTheNode() {
        #expect(
            RedisRedirect("MOVED 3999 127.0.0.1:6381") == .moved(slot: 3999, to: .init(host: "127.0.0.1", port: 6381)))
        #expect(
            RedisRedirect("ASK 3999 redis-2.internal:6380")
                == .ask(slot: 3999, to: .init(host: "redis-2.internal", port: 6380)))
        // A node that does not know its own address leaves the host out.
        #expect(RedisRedirect("MOVED 1 :7002") == .moved(slot: 1, to: .init(host: "", port: 7002)))
        #expect(RedisRedirect("ERR unknown command") == nil)
        #expect(RedisRedirect("MOVED x 127.0.0.1:6381") == nil)
        #expect(RedisRedirect("CLUSTERDOWN The cluster is down") == nil)
    }

    @Test func theSlotMapComesFromClusterShards() throws {
        func node(_ fields: [(String, RESPValue)]) -> RESPValue {
            .array(fields.flatMap { [RESPValue.bulkString(Array($0.0.utf8)), $0.1] })
        }
        func text(_ value: String) -> RESPValue { .bulkString(Array(value.utf8)) }
        let reply = RESPValue.array([
            node([
                ("slots", .array([.integer(0), .integer(5460)])),
                (
                    "nodes",
                    .array([
                        node([
                            ("id", text("a")), ("port", .integer(7001)), ("tls-port", .integer(8001)),
                            ("ip", text("10.0.0.1")), ("endpoint", text("redis-a")), ("role", text("master")),
                            ("health", text("online")),
                        ]),
                        node([
                            ("id", text("d")), ("port", .integer(7004)), ("ip", text("10.0.0.4")),
                            ("endpoint", text("redis-d")), ("role", text("replica")), ("health", text("online")),
                        ]),
                    ])
                ),
            ]),
            node([
                ("slots", .array([.integer(5461), .integer(10922), .integer(10923), .integer(16383)])),
                (
                    "nodes",
                    .array([
                        node([
                            ("id", text("b")), ("port", .integer(7002)), ("ip", text("10.0.0.2")),
                            ("endpoint", text("?")), ("role", text("master")), ("health", text("online")),
                        ])
                    ])
                ),
            ]),
        ])
        let queried = RedisNodeAddress(host: "seed", port: 7001)
        let map = try RedisSlotMap(shards: reply, queried: queried, tls: false)
        #expect(map.isComplete)
        #expect(map.primary(for: 0) == RedisNodeAddress(host: "redis-a", port: 7001))
        #expect(map.primary(for: 5460) == RedisNodeAddress(host: "redis-a", port: 7001))
        // An endpoint of `?` falls back to the node's ip.
        #expect(map.primary(for: 5461) == RedisNodeAddress(host: "10.0.0.2", port: 7002))
        #expect(map.primary(for: 16383) == RedisNodeAddress(host: "10.0.0.2", port: 7002))
        #expect(map.primaries.count == 2)
        // Over TLS a node's tls-port is the one to dial.
        let tls = try RedisSlotMap(shards: reply, queried: queried, tls: true)
        #expect(tls.primary(for: 0) == RedisNodeAddress(host: "redis-a", port: 8001))

        // CLUSTER SLOTS, for servers without SHARDS; a range without a primary leaves a hole.
        let slots = RESPValue.array([
            .array([.integer(0), .integer(99), .array([text(""), .integer(7003), text("c")])])
        ])
        var old = try RedisSlotMap(slots: slots, queried: queried)
        #expect(old.primary(for: 42) == RedisNodeAddress(host: "seed", port: 7003))
        #expect(old.primary(for: 100) == nil && !old.isComplete)
        // A MOVED reassigns one slot until the next refresh.
        old.assign(100...100, to: RedisNodeAddress(host: "seed", port: 7001))
        #expect(old.primary(for: 100) == RedisNodeAddress(host: "seed", port: 7001))
        #expect(throws: RedisError.self) { try RedisSlotMap(shards: .integer(1), queried: queried, tls: false) }
    }

    @Test func aPipelineIsSplitByNodeAndItsAnswersPutBackInOrder() {
        let plan = RedisPipelinePlan(nodes: ["a", "b", "a", "c", "b", "a"])
        #expect(plan.batches.map(\.node) == ["a", "b", "c"])
        #expect(plan.batches.map(\.positions) == [[0, 2, 5], [1, 4], [3]])
        let answers = plan.batches.map { batch in batch.positions.map { "answer \($0) from \(batch.node)" } }
        #expect(
            plan.merge(answers, count: 6) == [
                "answer 0 from a", "answer 1 from b", "answer 2 from a", "answer 3 from c", "answer 4 from b",
                "answer 5 from a",
            ])
    }

    /// One channel's events share a slot: after one of them fails for good, its later ones are not
    /// resent ahead of it (that reordered a reply's chunks while a shard failed over).
    @Test func aFailedCommandHoldsBackTheLaterCommandsOfItsSlot() {
        var resends = RedisPipelineResends<Int>()
        let first = resends.mayResend(7, retriable: true)
        #expect(first)
        resends.failed(7)
        let afterFailure = resends.mayResend(7, retriable: true)
        #expect(!afterFailure && resends.isHalted(7))
        let otherSlot = resends.mayResend(8, retriable: true)
        #expect(otherSlot && !resends.isHalted(8))
        let notRetriable = resends.mayResend(9, retriable: false)
        let laterOfIt = resends.mayResend(9, retriable: true)
        #expect(!notRetriable && !laterOfIt)
    }

    @Test func aClusterURLListsSeedsAndKeepsCredentialsAndTLS() throws {
        let cluster = try #require(RedisEndpoint(url: "redis+cluster://sb:pw@10.0.0.1:7001,10.0.0.2:7002,redis-c"))
        #expect(cluster.isCluster && cluster.username == "sb" && cluster.password == "pw")
        #expect(cluster.clusterSeeds.map(\.description) == ["10.0.0.1:7001", "10.0.0.2:7002", "redis-c:6379"])
        #expect(cluster.host == "10.0.0.1" && cluster.port == 7001)
        #expect(cluster.description == "redis+cluster://sb:***@10.0.0.1:7001,10.0.0.2:7002,redis-c:6379")
        let node = cluster.node(RedisNodeAddress(host: "10.0.0.9", port: 7009))
        #expect(!node.isCluster && node.host == "10.0.0.9" && node.port == 7009 && node.password == "pw")

        let query = try #require(RedisEndpoint(url: "rediss://h1:7001,h2:7002?cluster=true&ca_file=/ca.pem"))
        #expect(query.isCluster && query.usesTLS && query.caFile == "/ca.pem" && query.clusterSeeds.count == 2)
        #expect(try #require(RedisEndpoint(url: "rediss+cluster://h1:7001")).usesTLS)
        // One server stays the default; several hosts need cluster mode; a cluster has only database 0.
        #expect(RedisEndpoint(url: "redis://h1:6379")?.isCluster == false)
        #expect(RedisEndpoint(url: "redis://h1:6379?cluster=false")?.isCluster == false)
        #expect(RedisEndpoint(url: "redis://h1:7001,h2:7002") == nil)
        #expect(RedisEndpoint(url: "redis+cluster://h1:7001/2") == nil)
        #expect(RedisEndpoint(url: "redis+cluster://h1:7001,") == nil)
        #expect(RedisEndpoint(url: "redis://h1?cluster=yes") == nil)
    }
}
