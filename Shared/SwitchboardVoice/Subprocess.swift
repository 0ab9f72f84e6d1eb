import Dispatch
import Foundation

/// Runs a program and collects its standard output without blocking Swift's cooperative pool: the
/// blocking read and wait happen on a dispatch queue, the caller awaits a continuation.
public enum Subprocess {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    static let queue = DispatchQueue(label: "switchboard.subprocess", attributes: .concurrent)

    public static func output(of executable: String, arguments: [String]) async throws -> [UInt8] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice
        return try await withCheckedThrowingContinuation { continuation in
            queue.async {
                do {
                    try process.run()
                } catch {
                    continuation.resume(throwing: Failure(description: "cannot start \(executable): \(error)"))
                    return
                }
                let output = stdout.fileHandleForReading.readDataToEndOfFile()
                let errors = stderr.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                if process.terminationStatus == 0 {
                    continuation.resume(returning: [UInt8](output))
                } else {
                    let message = String(decoding: errors.prefix(500), as: UTF8.self)
                    continuation.resume(
                        throwing: Failure(description: "\(executable) exited \(process.terminationStatus): \(message)"))
                }
            }
        }
    }

    /// The first of `candidates` that exists and is executable, searching PATH for bare names.
    public static func locate(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for folder in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(folder)/\(name)")
        {
            return "\(folder)/\(name)"
        }
        return nil
    }
}

/// eSpeak NG as a subprocess (`espeak-ng --stdout`): no shared global state in our process, one
/// synthesis per call, many at once.
public struct EspeakSynthesizer: Sendable {
    public var executable: String
    public var voice: String
    public var wordsPerMinute: Int

    public init(executable: String = "espeak-ng", voice: String = "en-us", wordsPerMinute: Int = 160) throws {
        guard let path = Subprocess.locate(executable) else {
            throw Subprocess.Failure(description: "\(executable) not found (Debian package espeak-ng)")
        }
        self.executable = path
        self.voice = voice
        self.wordsPerMinute = wordsPerMinute
    }

    /// The speech of `text` as 16-bit mono PCM at eSpeak's own rate (22 050 Hz).
    public func synthesize(_ text: String) async throws -> WAV.Audio {
        // "--" ends the options: a text starting with "-" is spoken, not parsed.
        let bytes = try await Subprocess.output(
            of: executable, arguments: ["-v", voice, "-s", String(wordsPerMinute), "--stdout", "--", text])
        return try WAV.parse(bytes)
    }

    /// The speech resampled to `rate`.
    public func synthesize(_ text: String, sampleRate rate: Int) async throws -> [Int16] {
        let audio = try await synthesize(text)
        return Resampler.resample(audio.samples, from: audio.sampleRate, to: rate)
    }
}
