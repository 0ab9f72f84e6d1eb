import Foundation
import Logging
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardVoice
import Synchronization

extension VoiceSession {
    func json(_ message: Xiaozhi.Message, turn: Int64) -> VoiceDownlink.Item {
        VoiceDownlink.Item(sessionId: id, kind: .json, turn: turn, payload: Array(message.json().utf8))
    }

    /// Items in order to the gateway holding the device's socket, in one pipeline (one connection, so
    /// their order is kept).
    ///
    /// Pub/sub keeps nothing for a subscriber that is not there, so an item goes on only once the
    /// gateway has heard it (`publishUntilHeard`). While Redis cannot be reached the turn waits for it
    /// (up to the answer timeout) instead of failing, and once Redis is back it waits for the gateway to
    /// subscribe again (up to `listenerWait`; after that the gateway, and the device with it, is gone):
    /// the device hears its answer late rather than not at all.
    static let listenerWait = Duration.seconds(10)

    func publish(_ items: [VoiceDownlink.Item]) async throws {
        guard !downlinkLost.load(ordering: .relaxed) else { throw DownlinkUnheard(items: items.count) }
        let heard = try await owner.context.redis.publishUntilHeard(
            items.map(VoiceDownlink.encode), to: Keyspace.PubSub.voiceDownlink(gateway: route.gateway),
            listenerWait: Self.listenerWait, deadline: .now + owner.settings.answerTimeout)
        guard heard == items.count else {
            downlinkLost.store(true, ordering: .relaxed)
            throw DownlinkUnheard(items: items.count - heard)
        }
    }

    func send(_ kind: VoiceDownlink.Kind, turn: Int64, payload: [UInt8]) async {
        do {
            try await publish([VoiceDownlink.Item(sessionId: id, kind: kind, turn: turn, payload: payload)])
        } catch {
            logger.warning("downlink failed", metadata: ["error": "\(error)"])
        }
    }
}

/// The device's gateway did not subscribe to its downlink within `VoiceSession.listenerWait`.
struct DownlinkUnheard: Error, CustomStringConvertible {
    let items: Int
    var description: String { "no gateway listening on the downlink; \(items) items not delivered" }
}
