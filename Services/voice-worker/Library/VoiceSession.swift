import Foundation
import Logging
import Metrics
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardVoice
import Synchronization

/// One device session: the input loop (Opus decode, VAD, listen/abort control, idle timeouts) and the
/// speaker loop (ASR, the conversation's answer, TTS, downlink) run side by side so the device can be
/// heard while it is spoken to (barge-in).
final class VoiceSession: Sendable {
    enum Input: Sendable {
        case event(VoiceUplinkEvent)
        case tick
        case shutdown
    }

    /// What the speaker loop waits on: the conversation's frames, and aborts that cut a turn short.
    enum SpeakerInput: Sendable {
        case turn(Turn)
        case frame(ChannelWire.Message)
        case abort(turn: Int64)
        /// Once a second, so a turn waiting for an answer notices its deadline.
        case tick
    }

    struct Turn: Sendable {
        var number: Int64
        var audio: [Int16]?
        var text: String?
        /// When the user stopped speaking (the VAD's end minus its silence window).
        var stoppedSpeakingAt: ContinuousClock.Instant
        var endOfUtteranceAt: ContinuousClock.Instant
    }

    let id: String
    let route: VoiceRoute
    let owner: VoiceSessions
    let inputs: AsyncStream<Input>
    let inputContinuation: AsyncStream<Input>.Continuation
    let speaker: AsyncStream<SpeakerInput>
    let speakerContinuation: AsyncStream<SpeakerInput>.Continuation
    /// Turns numbered ≤ this were aborted: the speaker stops them at its next step.
    private let abortedThrough = Atomic<Int64>(0)
    private let subscription = Mutex<RedisSubscriptionToken?>(nil)
    /// Set once no gateway heard the downlink within `listenerWait`: later items fail at once.
    let downlinkLost = Atomic<Bool>(false)
    let logger: Logger

    init(id: String, route: VoiceRoute, owner: VoiceSessions) {
        self.id = id
        self.route = route
        self.owner = owner
        (inputs, inputContinuation) = AsyncStream.makeStream(
            bufferingPolicy: .bufferingNewest(owner.settings.queueFrames))
        (speaker, speakerContinuation) = AsyncStream.makeStream()
        var logger = owner.context.logger
        logger[metadataKey: "voice.session"] = "\(id)"
        self.logger = logger
    }

    /// Follows the conversation before any turn can start, so no frame of an answer is missed.
    func prepare() async throws {
        let continuation = speakerContinuation
        let token = try await owner.subscriber.subscribe(
            Keyspace.ClientChannel.live(.conversation(route.conversationId))
        ) { bytes in
            if let message = ChannelWire.decode(bytes) { continuation.yield(.frame(message)) }
        }
        subscription.withLock { $0 = token }
    }

    /// Uplink events waiting in every session's input queue of this worker (`sb_voice_input_queue_depth`).
    static let queued = Atomic<Int>(0)
    /// This session's share of `queued`, given back when it ends with events still waiting.
    let pending = Atomic<Int>(0)

    /// False when the queue was full and the oldest input was dropped.
    func offer(_ event: VoiceUplinkEvent) -> Bool {
        switch inputContinuation.yield(.event(event)) {
        case .dropped:
            // One in, the oldest out: the depth stays.
            return false
        case .enqueued:
            pending.add(1, ordering: .relaxed)
            VoiceWorkerMetrics.inputQueueDepth.record(Self.queued.add(1, ordering: .relaxed).newValue)
            return true
        case .terminated:
            return true
        @unknown default:
            return true
        }
    }

    func shutDown() {
        inputContinuation.yield(.shutdown)
    }

    func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.speakerLoop() }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(1))
                    self.inputContinuation.yield(.tick)
                    self.speakerContinuation.yield(.tick)
                }
            }
            await inputLoop()
            speakerContinuation.finish()
            group.cancelAll()
        }
        let left = pending.exchange(0, ordering: .relaxed)
        VoiceWorkerMetrics.inputQueueDepth.record(Self.queued.subtract(left, ordering: .relaxed).newValue)
        if let token = subscription.withLock({ $0 }) { await owner.subscriber.unsubscribe(token) }
    }

    func abort(through turn: Int64) {
        abortedThrough.store(turn, ordering: .relaxed)
        speakerContinuation.yield(.abort(turn: turn))
    }

    func isAborted(_ turn: Int64) -> Bool { abortedThrough.load(ordering: .relaxed) >= turn }
}
