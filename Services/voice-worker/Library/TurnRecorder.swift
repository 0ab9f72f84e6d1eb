import Dispatch
import Foundation
import SwitchboardVoice

/// Writes a turn's decoded audio as a 16 kHz WAV (`VoiceSettings.recordDirectory`). The file is written
/// on a dispatch queue of its own: a blocking write never runs on Swift's cooperative pool.
enum TurnRecorder {
    private static let queue = DispatchQueue(label: "switchboard.voice.turn-recorder")

    static func write(_ samples: [Int16], to folder: String, name: String) async throws {
        let bytes = WAV.encode(samples, sampleRate: 16_000)
        let url = URL(fileURLWithPath: folder).appendingPathComponent(name)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            queue.async {
                do {
                    try FileManager.default.createDirectory(
                        at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                    try Data(bytes).write(to: url, options: .atomic)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }
}
