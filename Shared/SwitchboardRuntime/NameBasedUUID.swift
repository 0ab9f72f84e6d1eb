import Crypto
import Foundation

/// Event ids derived from what an event is (RFC 9562 version 5: SHA-1 of a name), so an event emitted
/// again by a retried or redelivered step has the id it had the first time and the notifier's
/// idempotency drops it instead of showing it twice.
public enum NameBasedUUID {
    public static func make(_ name: String) -> UUID {
        var bytes = Array(Insecure.SHA1.hash(data: Array(name.utf8)).prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x50
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        return UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }
}
