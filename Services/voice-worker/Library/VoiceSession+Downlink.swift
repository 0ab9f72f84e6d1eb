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
    /// gateway has heard it. While Redis cannot be reached the turn waits for it (up to the answer
    /// timeout) instead of failing, and once Redis is back it waits for the gateway to subscribe again
    /// (up to `listenerWait`; after that the gateway, and the device with it, is gone): the device hears
    /// its answer late rather than not at all.
    private static let redisWait = Backoff(initial: .milliseconds(50), maximum: .seconds(1))
    static let listenerWait = Duration.seconds(10)

    func publish(_ items: [VoiceDownlink.Item]) async throws {
        guard !downlinkLost.load(ordering: .relaxed) else { throw DownlinkUnheard(items: items.count) }
        let channel = Keyspace.PubSub.voiceDownlink(gateway: route.gateway)
        var unheard = items.map(VoiceDownlink.encode)[...]
        let giveUp = ContinuousClock.now + owner.settings.answerTimeout
        var listenerGone = ContinuousClock.now + Self.listenerWait
        var attempt = 0
        while true {
            do {
                let heard = try await owner.context.redis.publish(Array(unheard), to: channel)
                unheard = unheard.dropFirst(heard)
                if unheard.isEmpty { return }
                if heard > 0 { listenerGone = ContinuousClock.now + Self.listenerWait }
                guard ContinuousClock.now < listenerGone else {
                    downlinkLost.store(true, ordering: .relaxed)
                    throw DownlinkUnheard(items: unheard.count)
                }
            } catch let error as RedisError where error.code == .connection && ContinuousClock.now < giveUp {
                listenerGone = ContinuousClock.now + Self.listenerWait
            }
            try await Task.sleep(for: Self.redisWait.delay(attempt: attempt))
            attempt += 1
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
