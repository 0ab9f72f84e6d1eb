/// Redis Cluster's key → slot function: CRC16 (XMODEM) of the key, or of its hash tag, mod 16384.
public enum RedisHashSlot {
    public static let count = 16384

    /// The slot of a key or a shard channel. Only the part between the first `{` and the next `}` is
    /// hashed when it is not empty, so `sb:{conversation:c1}:meta` and `sb:{conversation:c1}:live` share
    /// a slot.
    public static func of(_ key: [UInt8]) -> Int {
        Int(crc16(hashTag(of: key) ?? key[...]) % UInt16(count))
    }

    public static func of(_ key: String) -> Int { of(Array(key.utf8)) }

    /// The bytes inside the key's hash tag, or nil when it has none (no `{`, no `}` after it, or `{}`).
    public static func hashTag(of key: [UInt8]) -> ArraySlice<UInt8>? {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")),
            let close = key[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        else { return nil }
        return key[(open + 1)..<close]
    }

    /// Whether a pub/sub channel belongs to one shard in a cluster: a channel named with a hash tag (the
    /// client channels' `sb:{conversation:c1}:live`) is published with SPUBLISH and followed with
    /// SSUBSCRIBE on the shard owning its slot; one without (`sb:runs:stop`) is cluster-wide.
    public static func isShardChannel(_ channel: String) -> Bool { hashTag(of: Array(channel.utf8)) != nil }

    private static let table: [UInt16] = (0..<256).map { byte in
        var crc = UInt16(byte) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }

    static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes { crc = (crc << 8) ^ table[Int((crc >> 8) ^ UInt16(byte))] }
        return crc
    }
}
