import CPocketSphinx
import Dispatch
import Foundation
import Synchronization

/// Offline English ASR with PocketSphinx (every libpocketsphinx call of Switchboard is in this folder).
/// A decoder is not thread-safe and takes a second to load, so each lives on its own serial dispatch
/// queue for the life of the process; utterances wait for a free decoder without blocking the pool.
public final class PocketSphinxRecognizer: SpeechRecognizer, Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Debian's pocketsphinx-en-us files.
        public var modelDirectory = "/usr/share/pocketsphinx/model/en-us"
        /// Decoders loaded (one utterance at a time each); ~30 MB per decoder.
        public var decoders = 1

        public init() {}
    }

    /// One decoder and the queue that owns it. The handle is touched only on `queue`.
    final class Slot: @unchecked Sendable {
        let queue: DispatchQueue
        var decoder: OpaquePointer?

        init(index: Int) { queue = DispatchQueue(label: "switchboard.pocketsphinx.\(index)") }
    }

    private let slots: [Slot]
    private let free: FreeSlots
    public let configuration: Configuration

    public init(configuration: Configuration = Configuration()) throws {
        self.configuration = configuration
        let hmm = "\(configuration.modelDirectory)/en-us"
        for path in [
            hmm, "\(configuration.modelDirectory)/en-us.lm.bin", "\(configuration.modelDirectory)/cmudict-en-us.dict",
        ]
        where !FileManager.default.fileExists(atPath: path) {
            throw RecognizerError("PocketSphinx model file \(path) is missing (Debian package pocketsphinx-en-us)")
        }
        slots = (0..<max(1, configuration.decoders)).map(Slot.init(index:))
        free = FreeSlots(count: slots.count)
    }

    /// Loads every decoder now, so the first utterance does not pay for it.
    public func load() async throws {
        for slot in slots { try await run(on: slot) { _ in } }
    }

    public func transcribe(_ samples: [Int16], sampleRate: Int) async throws -> String {
        guard sampleRate == 16_000 else {
            throw RecognizerError("PocketSphinx's en-us model wants 16 kHz audio, got \(sampleRate)")
        }
        let index = await free.acquire()
        defer { free.release(index) }
        return try await run(on: slots[index]) { decoder in
            guard ps_start_utt(decoder) >= 0 else { throw RecognizerError("ps_start_utt failed") }
            // The whole utterance at once with batch CMN: the result depends on this utterance only,
            // not on what the decoder heard before (another session's audio).
            let processed = samples.withUnsafeBufferPointer { ps_process_raw(decoder, $0.baseAddress, $0.count, 0, 1) }
            guard ps_end_utt(decoder) >= 0, processed >= 0 else { throw RecognizerError("ps_process_raw failed") }
            var score: Int32 = 0
            guard let hypothesis = ps_get_hyp(decoder, &score) else { return "" }
            return String(cString: hypothesis)
        }
    }

    private func run<T: Sendable>(on slot: Slot, _ body: @escaping @Sendable (OpaquePointer) throws -> T) async throws
        -> T
    {
        let modelDirectory = configuration.modelDirectory
        return try await withCheckedThrowingContinuation { continuation in
            slot.queue.async {
                do {
                    if slot.decoder == nil { slot.decoder = try Self.makeDecoder(modelDirectory: modelDirectory) }
                    continuation.resume(returning: try body(slot.decoder!))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    static func makeDecoder(modelDirectory: String) throws -> OpaquePointer {
        let arguments = [
            "-hmm", "\(modelDirectory)/en-us", "-lm", "\(modelDirectory)/en-us.lm.bin",
            "-dict", "\(modelDirectory)/cmudict-en-us.dict", "-samprate", "16000", "-cmn", "batch", "-logfn",
            "/dev/null",
        ]
        // The strings stay allocated: the configuration keeps pointers into them for the decoder's life.
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        guard let config = cmd_ln_parse_r(nil, ps_args(), Int32(argv.count), &argv, 1) else {
            throw RecognizerError("PocketSphinx rejected its configuration")
        }
        guard let decoder = ps_init(config) else {
            throw RecognizerError("PocketSphinx could not load \(modelDirectory)")
        }
        return decoder
    }
}

/// Indices of free decoders; `acquire` suspends, never blocks.
final class FreeSlots: Sendable {
    private let state: Mutex<(free: [Int], waiters: [CheckedContinuation<Int, Never>])>

    init(count: Int) { state = Mutex((Array(0..<count), [])) }

    func acquire() async -> Int {
        await withCheckedContinuation { continuation in
            let index: Int? = state.withLock { state in
                if let index = state.free.popLast() { return index }
                state.waiters.append(continuation)
                return nil
            }
            if let index { continuation.resume(returning: index) }
        }
    }

    func release(_ index: Int) {
        let waiter: CheckedContinuation<Int, Never>? = state.withLock { state in
            if state.waiters.isEmpty {
                state.free.append(index)
                return nil
            }
            return state.waiters.removeFirst()
        }
        waiter?.resume(returning: index)
    }
}
