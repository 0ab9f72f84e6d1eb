/// One node of a cluster, as `host:port`.
public struct RedisNodeAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port` (the port after the last colon, so an IPv6 host keeps its own); an empty host is
    /// allowed, as in `MOVED 3999 :6380` from a node that does not know its own address.
    init?(_ text: some StringProtocol) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), port > 0
        else { return nil }
        self.init(host: String(text[..<colon]), port: port)
    }

    public var description: String { "\(host):\(port)" }
}

/// Which primary owns each of the 16384 slots, as a node's `CLUSTER SHARDS` (or, before Redis 7,
/// `CLUSTER SLOTS`) describes it.
struct RedisSlotMap: Equatable {
    private(set) var primaries: [RedisNodeAddress] = []
    /// Per slot, an index into `primaries`, or -1 where no primary serves the slot.
    private var owners = [Int16](repeating: -1, count: RedisHashSlot.count)

    init() {}

    func primary(for slot: Int) -> RedisNodeAddress? {
        let owner = owners[slot]
        return owner < 0 ? nil : primaries[Int(owner)]
    }

    var isComplete: Bool { !owners.contains(-1) }

    /// Records a `MOVED`: one slot's new owner, until the next full refresh.
    mutating func assign(_ range: ClosedRange<Int>, to primary: RedisNodeAddress) {
        let index: Int
        if let known = primaries.firstIndex(of: primary) {
            index = known
        } else {
            primaries.append(primary)
            index = primaries.count - 1
        }
        for slot in range where (0..<RedisHashSlot.count).contains(slot) { owners[slot] = Int16(index) }
    }

    /// From `CLUSTER SHARDS` (RESP2: each shard and node is a flat list of field names and values):
    /// the primary of each shard that is not marked failed. `queried` stands in for a node that announces
    /// no address of its own; `tls` picks the `tls-port` where a node has one.
    init(shards reply: RESPValue, queried: RedisNodeAddress, tls: Bool) throws(RedisError) {
        guard let shards = reply.array else { throw RedisError(.protocolViolation, "CLUSTER SHARDS answered \(reply)") }
        self.init()
        for shard in shards {
            let fields = Self.fields(shard)
            guard let slots = fields["slots"]?.array, let nodes = fields["nodes"]?.array else {
                throw RedisError(.protocolViolation, "CLUSTER SHARDS shard without slots or nodes: \(shard)")
            }
            let primary = nodes.map(Self.fields).first {
                $0["role"]?.string == "master" && $0["health"]?.string != "fail"
            }
            guard let primary else { continue }
            let host = [primary["endpoint"], primary["ip"]].compactMap { $0?.string }.first { !$0.isEmpty && $0 != "?" }
            let port = (tls ? primary["tls-port"]?.integer : nil) ?? primary["port"]?.integer
            guard let port else { throw RedisError(.protocolViolation, "CLUSTER SHARDS node without a port") }
            let address = RedisNodeAddress(host: host ?? queried.host, port: Int(port))
            var bounds = slots.makeIterator()
            while let start = bounds.next()?.integer, let end = bounds.next()?.integer, start <= end {
                assign(Int(start)...Int(end), to: address)
            }
        }
    }

    /// From `CLUSTER SLOTS`: `[start, end, [host, port, id, ...], replicas...]` per range.
    init(slots reply: RESPValue, queried: RedisNodeAddress) throws(RedisError) {
        guard let ranges = reply.array else { throw RedisError(.protocolViolation, "CLUSTER SLOTS answered \(reply)") }
        self.init()
        for range in ranges {
            guard let parts = range.array, parts.count >= 3, let start = parts[0].integer, let end = parts[1].integer,
                start <= end, let node = parts[2].array, node.count >= 2, let port = node[1].integer
            else { throw RedisError(.protocolViolation, "CLUSTER SLOTS range \(range)") }
            let host = node[0].string.flatMap { $0.isEmpty || $0 == "?" ? nil : $0 } ?? queried.host
            assign(Int(start)...Int(end), to: RedisNodeAddress(host: host, port: Int(port)))
        }
    }

    private static func fields(_ value: RESPValue) -> [String: RESPValue] {
        var fields: [String: RESPValue] = [:]
        var items = (value.array ?? []).makeIterator()
        while let name = items.next(), let value = items.next() {
            if let name = name.string { fields[name] = value }
        }
        return fields
    }

    static func == (lhs: RedisSlotMap, rhs: RedisSlotMap) -> Bool {
        (0..<RedisHashSlot.count).allSatisfy { lhs.primary(for: $0) == rhs.primary(for: $0) }
    }
}

/// A pipeline split by node: each node gets its commands in their original order, and the answers are
/// put back where their commands were.
struct RedisPipelinePlan<Node: Hashable> {
    /// Per node, the positions of its commands in the pipeline, ascending.
    private(set) var batches: [(node: Node, positions: [Int])] = []

    init(nodes: [Node]) {
        var index: [Node: Int] = [:]
        for (position, node) in nodes.enumerated() {
            if let batch = index[node] {
                batches[batch].positions.append(position)
            } else {
                index[node] = batches.count
                batches.append((node, [position]))
            }
        }
    }

    /// The answers in pipeline order, from each batch's answers in its own order.
    func merge<Answer>(_ answers: [[Answer]], count: Int) -> [Answer] {
        var merged = [Answer?](repeating: nil, count: count)
        for (batch, batchAnswers) in zip(batches, answers) {
            for (position, answer) in zip(batch.positions, batchAnswers) { merged[position] = answer }
        }
        return merged.map { $0! }
    }
}

/// Which failed commands of a pipeline are sent again, visited in pipeline order: a command is resent
/// only while every earlier command of its route (its slot) succeeded, so a slot's commands never run out
/// of order. The later commands of a halted route stay failed, and the caller redoes the batch.
struct RedisPipelineResends<Route: Hashable> {
    private var halted: Set<Route> = []

    func isHalted(_ route: Route) -> Bool { halted.contains(route) }

    /// Whether a command that failed (`retriable`: redirected, refused for a moment, never sent) is sent
    /// again; a command that is not halts its route.
    mutating func mayResend(_ route: Route, retriable: Bool) -> Bool {
        guard retriable, !halted.contains(route) else {
            halted.insert(route)
            return false
        }
        return true
    }

    /// The resent command failed again: its route's later commands wait for the next try.
    mutating func failed(_ route: Route) {
        halted.insert(route)
    }
}
