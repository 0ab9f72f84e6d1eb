import Foundation
import SwitchboardContracts
import SwitchboardRedis

/// How long each stage of a device's turn took, in milliseconds (docs/voice.md#latency): the same
/// intervals as the voice-worker's `sb_voice_*_seconds` metrics, for one turn of one device. A stage
/// the turn did not go through (no ASR for typed text) is absent.
public struct VoiceTurnTiming: Codable, Sendable, Equatable {
    /// When the turn's timing was recorded (epoch milliseconds).
    public var at: Int64
    /// From the user's last word to the end of the utterance being decided (the VAD's silence window).
    public var endOfUtteranceMs: Int64?
    /// Speech recognition.
    public var asrMs: Int64?
    /// From the question's submission to the first chunk of the answer.
    public var llmFirstTokenMs: Int64?
    /// Synthesis of the first sentence, until its audio went to the gateway.
    public var ttsFirstAudioMs: Int64?
    /// From the user's last word (or the typed text's arrival) to the first audio sent: what the user waited.
    public var totalMs: Int64?

    public init(
        at: Int64, endOfUtteranceMs: Int64? = nil, asrMs: Int64? = nil, llmFirstTokenMs: Int64? = nil,
        ttsFirstAudioMs: Int64? = nil, totalMs: Int64? = nil
    ) {
        self.at = at
        self.endOfUtteranceMs = endOfUtteranceMs
        self.asrMs = asrMs
        self.llmFirstTokenMs = llmFirstTokenMs
        self.ttsFirstAudioMs = ttsFirstAudioMs
        self.totalMs = totalMs
    }
}

/// Each device's last turn timing (`Keyspace.Device.lastTurn`): written by the voice-worker that
/// answered the turn, read by the gateway's devices API. It expires a day after the last turn.
public struct DeviceTurnTimings: Sendable {
    public static let ttlSeconds = 24 * 60 * 60

    let redis: RedisClient

    public init(redis: RedisClient) {
        self.redis = redis
    }

    /// The voice-worker's side.
    public func record(_ timing: VoiceTurnTiming, device: String) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        _ = try await redis.send(
            "SET", RedisArgument(Keyspace.Device.lastTurn(device)),
            RedisArgument(bytes: Array(try encoder.encode(timing))),
            "EX", RedisArgument(Self.ttlSeconds))
    }

    /// The gateway's side: the devices' last turns, by device id (a device without one is absent).
    public func last(devices: [String]) async throws -> [String: VoiceTurnTiming] {
        guard !devices.isEmpty else { return [:] }
        let replies = try await redis.pipeline(devices.map { ["GET", RedisArgument(Keyspace.Device.lastTurn($0))] })
        var timings: [String: VoiceTurnTiming] = [:]
        for (device, reply) in zip(devices, replies) {
            guard let bytes = reply.bytes else { continue }
            timings[device] = try? JSONDecoder().decode(VoiceTurnTiming.self, from: Data(bytes))
        }
        return timings
    }
}
