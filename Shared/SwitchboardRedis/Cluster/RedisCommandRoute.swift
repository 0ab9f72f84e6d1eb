/// Where a command goes in a cluster: to the node owning its key's slot, or to any node.
enum RedisCommandRoute: Hashable {
    case slot(Int)
    case anyNode

    /// Commands without a key (or whose effect is the same on every node); everything else not listed
    /// below takes its key as the first argument, as most Redis commands do.
    private static let keyless: Set<String> = [
        "ASKING", "AUTH", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DBSIZE", "ECHO", "FLUSHALL", "FLUSHDB",
        "FUNCTION", "HELLO", "INFO", "LATENCY", "MEMORY", "PING", "PUBLISH", "PUBSUB", "READONLY", "READWRITE",
        "ROLE", "SCRIPT", "SELECT", "SLOWLOG", "TIME", "WAIT",
    ]

    init(_ command: [RedisArgument]) {
        guard let key = Self.firstKey(of: command) else {
            self = .anyNode
            return
        }
        self = .slot(RedisHashSlot.of(key))
    }

    /// The first key of a command (a multi-key command keeps its keys in one slot, or the server refuses
    /// it with CROSSSLOT), or nil for a keyless one.
    static func firstKey(of command: [RedisArgument]) -> [UInt8]? {
        guard let first = command.first else { return nil }
        let name = String(decoding: first.bytes, as: UTF8.self).uppercased()
        switch name {
        case "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO":
            // name, script or function, numkeys, keys...
            guard command.count > 3, let count = Int(String(decoding: command[2].bytes, as: UTF8.self)), count > 0
            else { return nil }
            return command[3].bytes
        case "XREAD", "XREADGROUP":
            // ... STREAMS key... id...: the keys follow STREAMS.
            guard
                let streams = command.firstIndex(where: {
                    String(decoding: $0.bytes, as: UTF8.self).uppercased() == "STREAMS"
                }), streams + 1 < command.count
            else { return nil }
            return command[streams + 1].bytes
        default:
            if keyless.contains(name) || command.count < 2 { return nil }
            // SPUBLISH and SSUBSCRIBE route by their channel, which hashes like a key.
            return command[1].bytes
        }
    }
}

/// A `-MOVED` or `-ASK` answer: the slot lives (or, during a migration, this key lives) elsewhere.
enum RedisRedirect: Equatable {
    /// The slot's owner changed for good: update the slot map and retry there.
    case moved(slot: Int, to: RedisNodeAddress)
    /// One command's worth of redirect while the slot migrates: `ASKING` then the command on that node.
    case ask(slot: Int, to: RedisNodeAddress)

    /// Parses `MOVED 3999 127.0.0.1:6381` / `ASK 3999 127.0.0.1:6381` (the error text without its `-`).
    init?(_ message: String) {
        let parts = message.split(separator: " ")
        guard parts.count == 3, let slot = Int(parts[1]), let address = RedisNodeAddress(parts[2]) else { return nil }
        switch parts[0] {
        case "MOVED": self = .moved(slot: slot, to: address)
        case "ASK": self = .ask(slot: slot, to: address)
        default: return nil
        }
    }
}
