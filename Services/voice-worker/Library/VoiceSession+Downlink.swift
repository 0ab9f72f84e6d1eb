import Foundation
import Logging
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardVoice

extension VoiceSession {
    func json(_ message: Xiaozhi.Message, turn: Int64) -> VoiceDownlink.Item {
        VoiceDownlink.Item(sessionId: id, kind: .json, turn: turn, payload: Array(message.json().utf8))
    }

    /// Items in order to the gateway holding the device's socket, in one pipeline (one connection, so
    /// their order is kept).
    ///
    /// While Redis cannot be reached the turn waits for it (up to the answer timeout) instead of failing:
    /// the device hears its answer late rather than not at all.
    private static let redisWait = Backoff(initial: .milliseconds(50), maximum: .seconds(1))

    func publish(_ items: [VoiceDownlink.Item]) async throws {
        let channel = RedisArgument(Keyspace.PubSub.voiceDownlink(gateway: route.gateway))
        let commands: [[RedisArgument]] = items.map {
            ["PUBLISH", channel, RedisArgument(bytes: VoiceDownlink.encode($0))]
        }
        let giveUp = ContinuousClock.now + owner.settings.answerTimeout
        var attempt = 0
        while true {
            do {
                _ = try await owner.context.redis.pipeline(commands)
                return
            } catch let error as RedisError where error.code == .connection && ContinuousClock.now < giveUp {
                try await Task.sleep(for: Self.redisWait.delay(attempt: attempt))
                attempt += 1
            }
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
