import Foundation
import Logging
import Metrics
import Synchronization
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardVoice

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
    private let inputs: AsyncStream<Input>
    private let inputContinuation: AsyncStream<Input>.Continuation
    private let speaker: AsyncStream<SpeakerInput>
    private let speakerContinuation: AsyncStream<SpeakerInput>.Continuation
    /// Turns numbered ≤ this were aborted: the speaker stops them at its next step.
    private let abortedThrough = Atomic<Int64>(0)
    private let subscription = Mutex<RedisSubscriptionToken?>(nil)
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
    static let queueDepth = Gauge(label: "sb_voice_input_queue_depth")
    /// This session's share of `queued`, given back when it ends with events still waiting.
    private let pending = Atomic<Int>(0)

    /// False when the queue was full and the oldest input was dropped.
    func offer(_ event: VoiceUplinkEvent) -> Bool {
        switch inputContinuation.yield(.event(event)) {
        case .dropped:
            // One in, the oldest out: the depth stays.
            return false
        case .enqueued:
            pending.add(1, ordering: .relaxed)
            Self.queueDepth.record(Self.queued.add(1, ordering: .relaxed).newValue)
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
        Self.queueDepth.record(Self.queued.subtract(left, ordering: .relaxed).newValue)
        if let token = subscription.withLock({ $0 }) { await owner.subscriber.unsubscribe(token) }
    }

    // MARK: input

    static let decodeErrors = Counter(label: "sb_voice_decode_errors_total")
    /// Throughput: Opus packets decoded.
    static let packetsDecoded = Counter(label: "sb_voice_uplink_packets_decoded_total")
    /// Half of the last 40 packets undecodable (or not 60 ms): a broken encoder, not a glitch; closed.
    static let decodeWindow = 40
    static let maxDecodeErrorsInWindow = 20

    private func inputLoop() async {
        // Decoded at the device's own rate; the VAD and ASR get 16 kHz in 60 ms frames.
        guard let decoder = try? OpusDecoder(format: route.uplink) else { return }
        var framer = UplinkFramer(sourceRate: route.uplink.sampleRate)
        let settings = owner.settings
        var vad = VoiceActivityDetector(configuration: settings.vad, sampleRate: 16_000)
        var state = ListenState()
        var turn: Int64 = 0
        var manualAudio = ManualRecording()
        var outcomes = DecodeOutcomes(window: Self.decodeWindow)
        let clock = ContinuousClock()
        var lastVoice = clock.now
        var saidFarewell = false
        for await input in inputs {
            switch input {
            case .shutdown:
                // The device stays connected: after the rebalance another instance picks the session up
                // from the routing table.
                return
            case .tick:
                let idle = clock.now - lastVoice
                if idle >= settings.hardClose {
                    await send(
                        .close, turn: 0, payload: Array("\(CloseCode.idleTimeout.rawValue) no voice for too long".utf8))
                    return
                }
                if idle >= settings.idleFarewell, !saidFarewell {
                    saidFarewell = true
                    turn += 1
                    speakerContinuation.yield(
                        .turn(
                            Turn(
                                number: turn, audio: nil, text: nil, stoppedSpeakingAt: clock.now,
                                endOfUtteranceAt: clock.now)))
                }
            case .event(let event):
                pending.subtract(1, ordering: .relaxed)
                Self.queueDepth.record(Self.queued.subtract(1, ordering: .relaxed).newValue)
                switch event.kind {
                case .open:
                    continue
                case .close:
                    abort(through: turn)
                    return
                case .audio:
                    guard let packet = event.audio else { continue }
                    // The device promised its frame length and rate in its hello: anything else is an error too.
                    guard let decoded = try? decoder.decode([UInt8](packet)),
                        decoded.count == route.uplink.samplesPerFrame
                    else {
                        Self.decodeErrors.increment()
                        let errors = outcomes.record(failed: true)
                        if errors == 1 {
                            await send(
                                .json, turn: turn,
                                payload: Array(
                                    Xiaozhi.Message.alert(
                                        status: "error", message: "undecodable Opus packet", sessionId: id
                                    ).json().utf8))
                        }
                        if errors >= Self.maxDecodeErrorsInWindow {
                            await send(
                                .close, turn: 0,
                                payload: Array(
                                    "\(CloseCode.badRequest.rawValue) the audio is not the mono Opus the hello announced"
                                        .utf8))
                            return
                        }
                        continue
                    }
                    _ = outcomes.record(failed: false)
                    Self.packetsDecoded.increment()
                    guard state.listening else { continue }
                    for pcm in framer.push(decoded) {
                        // Auto mode stops listening at the end of an utterance, maybe mid-packet.
                        guard state.listening else { break }
                        if state.mode == .manual {
                            if VoiceActivityDetector.rms(pcm) >= settings.vad.minimumSpeechRMS { lastVoice = clock.now }
                            guard manualAudio.append(pcm) else {
                                // The device never said stop: take what fits as the turn, and tell it why.
                                state.listening = false
                                await send(
                                    .json, turn: turn,
                                    payload: Array(
                                        Xiaozhi.Message.alert(
                                            status: "error", message: ManualRecording.fullMessage, sessionId: id
                                        ).json().utf8))
                                turn += 1
                                let now = clock.now
                                speakerContinuation.yield(
                                    .turn(
                                        Turn(
                                            number: turn, audio: manualAudio.samples, text: nil, stoppedSpeakingAt: now,
                                            endOfUtteranceAt: now)))
                                manualAudio.removeAll()
                                continue
                            }
                            continue
                        }
                        switch vad.process(pcm) {
                        case .speechStarted:
                            lastVoice = clock.now
                            saidFarewell = false
                            // Speech while speaking (realtime mode, device with AEC): barge in.
                            if state.mode == .realtime, state.speaking {
                                abort(through: turn)
                                await send(
                                    .json, turn: turn,
                                    payload: Array(Xiaozhi.Message.tts(.stop, sessionId: id).json().utf8))
                            }
                        case .utteranceEnded(let samples, let trailing):
                            lastVoice = clock.now
                            let now = clock.now
                            turn += 1
                            state.speaking = true
                            if state.mode == .auto { state.listening = false }
                            speakerContinuation.yield(
                                .turn(
                                    Turn(
                                        number: turn, audio: samples, text: nil,
                                        stoppedSpeakingAt: now - .milliseconds(trailing * 1000 / 16_000),
                                        endOfUtteranceAt: now)))
                        case nil:
                            if vad.inSpeech { lastVoice = clock.now }
                        }
                    }
                case .control:
                    guard let text = event.message, let message = try? Xiaozhi.Message.parse(text) else { continue }
                    switch message.type {
                    case "listen":
                        switch message.listenState {
                        case .start:
                            state.listening = true
                            state.mode = message.mode ?? state.mode
                            vad.reset()
                            framer.reset()
                            manualAudio.removeAll()
                            lastVoice = clock.now
                        case .stop:
                            state.listening = false
                            let now = clock.now
                            if state.mode == .manual, !manualAudio.samples.isEmpty {
                                turn += 1
                                speakerContinuation.yield(
                                    .turn(
                                        Turn(
                                            number: turn, audio: manualAudio.samples, text: nil, stoppedSpeakingAt: now,
                                            endOfUtteranceAt: now)))
                            } else if case .utteranceEnded(let samples, _) = vad.flush() {
                                turn += 1
                                speakerContinuation.yield(
                                    .turn(
                                        Turn(
                                            number: turn, audio: samples, text: nil, stoppedSpeakingAt: now,
                                            endOfUtteranceAt: now)))
                            }
                            manualAudio.removeAll()
                        case .detect:
                            // A wake word or typed text: straight to the conversation, no ASR.
                            guard let text = message.text?.trimmingCharacters(in: .whitespacesAndNewlines),
                                !text.isEmpty
                            else { continue }
                            lastVoice = clock.now
                            turn += 1
                            let now = clock.now
                            speakerContinuation.yield(
                                .turn(
                                    Turn(
                                        number: turn, audio: nil, text: text, stoppedSpeakingAt: now,
                                        endOfUtteranceAt: now)))
                        case nil:
                            continue
                        }
                    case "abort":
                        abort(through: turn)
                        state.speaking = false
                    default:
                        continue  // mcp results, iot descriptors: nothing to do without tools yet
                    }
                }
            }
        }
    }

    /// Failures among the last `window` packets.
    struct DecodeOutcomes {
        let window: Int
        private var recent: [Bool] = []
        private var failures = 0

        init(window: Int) { self.window = window }

        /// Records one packet; returns the failures in the window.
        mutating func record(failed: Bool) -> Int {
            recent.append(failed)
            if failed { failures += 1 }
            if recent.count > window, recent.removeFirst() { failures -= 1 }
            return failures
        }
    }

    /// Listening state of the device as the session sees it.
    struct ListenState {
        var listening = false
        var mode: Xiaozhi.ListenMode = .auto
        var speaking = false
    }

    private func abort(through turn: Int64) {
        abortedThrough.store(turn, ordering: .relaxed)
        speakerContinuation.yield(.abort(turn: turn))
    }

    func isAborted(_ turn: Int64) -> Bool { abortedThrough.load(ordering: .relaxed) >= turn }

    // MARK: speaker

    static let asrTime = Metrics.Timer(label: "sb_voice_asr_seconds")
    static let llmFirstToken = Metrics.Timer(label: "sb_voice_llm_first_token_seconds")
    static let ttsFirstAudio = Metrics.Timer(label: "sb_voice_tts_first_audio_seconds")
    static let endOfUtterance = Metrics.Timer(label: "sb_voice_end_of_utterance_delay_seconds")
    static let voiceToVoice = Metrics.Timer(label: "sb_voice_voice_to_voice_seconds")
    static let turnsCounter = Counter(label: "sb_voice_turns_total")
    /// Error rate: failed turns over `sb_voice_turns_total`.
    static let turnFailures = Counter(label: "sb_voice_turn_failures_total")
    /// Turns the conversation refused (MESSAGE_REJECTED): busy, queue full.
    static let turnsRejected = Counter(label: "sb_voice_turns_rejected_total")

    /// What the device shows for a turn the conversation did not take, by MESSAGE_REJECTED's reason.
    static func notAnswered(_ reason: String) -> String {
        switch reason {
        case "busy": "still answering the last question; ask again in a moment"
        case "queue_full": "too many questions are waiting; ask again in a moment"
        default: "the question was not answered (\(reason))"
        }
    }

    private func speakerLoop() async {
        var iterator = speaker.makeAsyncIterator()
        while let input = await iterator.next() {
            guard case .turn(let turn) = input, !isAborted(turn.number) else { continue }
            do {
                try await speak(turn, iterator: &iterator)
            } catch {
                Self.turnFailures.increment()
                logger.warning("voice turn failed", metadata: ["error": "\(error)"])
                await send(
                    .json, turn: turn.number,
                    payload: Array(
                        Xiaozhi.Message.alert(status: "error", message: "the answer failed; try again", sessionId: id)
                            .json().utf8))
                await send(.ttsStop, turn: turn.number, payload: [])
            }
        }
    }

    private func speak(_ turn: Turn, iterator: inout AsyncStream<SpeakerInput>.Iterator) async throws {
        Self.turnsCounter.increment()
        let clock = ContinuousClock()
        let encoder = try OpusEncoder(format: .downlink)
        var firstAudioSent = false
        var sentTTSStart = false
        // The stages of this turn, as the metrics below time them, kept for the devices page.
        var timing = VoiceTurnTiming(at: 0)
        func speakText(_ text: String) async throws {
            let synthesisStart = clock.now
            let pcm = try await owner.engines.synthesizer.synthesize(text, sampleRate: 24_000)
            guard !isAborted(turn.number) else { return }
            let packets = try encoder.encodeAll(pcm)
            var items = [VoiceDownlink.Item]()
            if !sentTTSStart {
                sentTTSStart = true
                items.append(json(.tts(.start, sessionId: id), turn: turn.number))
            }
            items.append(json(.tts(.sentenceStart, text: text, sessionId: id), turn: turn.number))
            items += packets.map { VoiceDownlink.Item(sessionId: id, kind: .audio, turn: turn.number, payload: $0) }
            try await publish(items)
            if !firstAudioSent {
                firstAudioSent = true
                timing.ttsFirstAudioMs =
                    Self.ttsFirstAudio.recordInterval(since: synthesisStart, clock: clock)
                    .milliseconds
                if turn.audio != nil {
                    timing.totalMs =
                        Self.voiceToVoice.recordInterval(since: turn.stoppedSpeakingAt, clock: clock)
                        .milliseconds
                } else {
                    timing.totalMs = (clock.now - turn.stoppedSpeakingAt).milliseconds
                }
            }
        }
        // The idle farewell: no ASR, no conversation; the gateway closes once it has been played.
        if turn.audio == nil && turn.text == nil {
            try await speakText(owner.settings.farewellText)
            try await publish([
                VoiceDownlink.Item(sessionId: id, kind: .ttsStop, turn: turn.number, payload: []),
                VoiceDownlink.Item(
                    sessionId: id, kind: .close, turn: 0,
                    payload: Array("\(CloseCode.idleTimeout.rawValue) no voice for a while; goodbye".utf8)),
            ])
            return
        }
        let text: String
        if let audio = turn.audio {
            timing.endOfUtteranceMs =
                Self.endOfUtterance.recordInterval(since: turn.stoppedSpeakingAt, clock: clock)
                .milliseconds
            if let folder = owner.settings.recordDirectory {
                do {
                    try await TurnRecorder.write(audio, to: folder, name: "\(id)-\(turn.number).wav")
                } catch {
                    logger.warning("turn audio not recorded", metadata: ["error": "\(error)"])
                }
            }
            let start = clock.now
            text = try await owner.engines.recognizer.transcribe(audio, sampleRate: 16_000)
            timing.asrMs = Self.asrTime.recordInterval(since: start, clock: clock).milliseconds
            logger.debug("recognised", metadata: ["voice.text": "\(text)"])
        } else {
            text = turn.text ?? ""
        }
        guard !isAborted(turn.number) else { return }
        try await publish([json(.stt(text, sessionId: id), turn: turn.number)])
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            // Nothing understood: let the device listen again.
            try await publish([VoiceDownlink.Item(sessionId: id, kind: .ttsStop, turn: turn.number, payload: [])])
            return
        }
        let messageID = UUID().uuidString.lowercased()
        let submittedAt = clock.now
        // The device's MCP tools travel with the turn: the replying agent may call them.
        let tools: [DeviceTool]
        do {
            tools = try await VoiceRouteStore(redis: owner.context.redis).tools(session: id)
        } catch {
            logger.warning("device tools unreadable; the turn goes without them", metadata: ["error": "\(error)"])
            tools = []
        }
        // Unique to this submission, not the turn number: a session taken over after a rebalance numbers
        // its turns from 1 again, and the orchestrator rejects a client message id seen before as a
        // duplicate, so the device's next question went unanswered (DoubledStackTests).
        let payload = ChatMessageSubmitted(
            messageId: messageID, clientMessageId: "voice-\(id)-\(messageID)", conversationId: route.conversationId,
            userId: route.userId, content: text, gateway: route.gateway, pattern: owner.settings.pattern,
            deviceTools: tools.isEmpty ? nil : DeviceToolbox(sessionId: id, gateway: route.gateway, tools: tools))
        // Where the conversation stood before the question: what the subscription misses (Redis went away
        // while the answer streamed) is read from the channel's stream after that offset.
        let channel = Channel.conversation(route.conversationId)
        let history = ChannelHistory(redis: owner.context.redis)
        var position = try? await history.read(channel, after: nil).top
        var generation = owner.subscriber.connectionGeneration
        try await owner.context.publish(
            owner.context.envelope(payload, routingKey: route.conversationId), to: Topics.chatRequests)
        var replyID: String?
        var splitter = SentenceSplitter()
        var firstToken = false
        var sentEmotion = false
        /// The `llm` frame once per turn, before the first sentence: the emotion of the answer's start
        /// (`Emotion`); a leading emoji shows as the face and is not spoken.
        func speakSentence(_ sentence: String) async throws {
            var sentence = sentence
            if !sentEmotion {
                sentEmotion = true
                let reading = Emotion.classify(sentence)
                try await publish([
                    json(.llm(emotion: reading.emotion, text: reading.emoji, sessionId: id), turn: turn.number)
                ])
                sentence = Emotion.strippingLeadingEmoji(sentence)
            }
            guard !sentence.isEmpty else { return }
            try await speakText(sentence)
        }
        /// One event of the conversation, in order: the answer's start, its chunks spoken sentence by
        /// sentence, its end; or the question's rejection.
        func handle(_ message: ChannelWire.Message) async throws -> AnswerStep {
            guard let data = Self.data(of: message) else { return .listening }
            switch message.frameType {
            case FrameType.messageStreamStart:
                if data["inReplyTo"] as? String == messageID { replyID = data["messageId"] as? String }
            case FrameType.messageStreamChunk:
                guard let replyID, data["messageId"] as? String == replyID, let chunk = data["chunk"] as? String
                else { return .listening }
                if !firstToken {
                    firstToken = true
                    timing.llmFirstTokenMs =
                        Self.llmFirstToken.recordInterval(since: submittedAt, clock: clock)
                        .milliseconds
                }
                for sentence in splitter.append(chunk) {
                    try await speakSentence(sentence)
                    if isAborted(turn.number) { return .aborted }
                }
            case FrameType.messageStreamEnd:
                guard let replyID, data["messageId"] as? String == replyID else { return .listening }
                if let rest = splitter.finish() { try await speakSentence(rest) }
                return .answered
            case FrameType.messageRejected:
                // Not answered (the conversation is busy or its queue full): the device hears why at
                // once instead of waiting out the answer timeout.
                guard data["messageId"] as? String == messageID else { return .listening }
                return .rejected(data["reason"] as? String ?? "rejected")
            default:
                break
            }
            return .listening
        }
        /// The events after the last one followed, from the channel's stream (all it keeps when where the
        /// conversation stood is unknown: Redis was down when the question was asked; earlier answers'
        /// events name other messages and are passed over).
        func catchUp() async throws -> AnswerStep {
            for message in try await history.read(channel, after: position?.offset ?? 0).events {
                position = (message.offset, message.epoch)
                let step = try await handle(message)
                if step != .listening { return step }
            }
            return .listening
        }
        /// A live event: one already read from the stream is skipped; one after a gap first has the
        /// missed ones read.
        func follow(_ message: ChannelWire.Message) async throws -> AnswerStep {
            if position == nil {
                let step = try await catchUp()
                if step != .listening { return step }
            }
            if let last = position, last.epoch == message.epoch {
                if message.offset <= last.offset { return .listening }
                if message.offset > last.offset + 1 {
                    let step = try await catchUp()
                    if step != .listening { return step }
                    if let caught = position, message.offset <= caught.offset { return .listening }
                }
            }
            position = (message.offset, message.epoch)
            return try await handle(message)
        }
        var step = AnswerStep.listening
        let deadline = ContinuousClock.now + owner.settings.answerTimeout
        while step == .listening {
            guard let next = await iterator.next() else { return }
            switch next {
            case .turn:
                continue  // a newer turn while this one speaks: the device aborts first in practice
            case .tick:
                if ContinuousClock.now >= deadline {
                    throw RecognizerError("no answer from the conversation within the timeout")
                }
                // The subscription was made again: what was published meanwhile is only in the stream.
                let current = owner.subscriber.connectionGeneration
                if current != generation {
                    generation = current
                    step = try await catchUp()
                }
            case .abort(let through):
                if through >= turn.number {
                    try? await interruptConversation()
                    return
                }
            case .frame(let message):
                step = try await follow(message)
            }
        }
        switch step {
        case .rejected(let reason):
            Self.turnsRejected.increment()
            logger.info("voice turn not answered", metadata: ["voice.reason": "\(reason)"])
            try await publish([
                json(.alert(status: "warning", message: Self.notAnswered(reason), sessionId: id), turn: turn.number),
                VoiceDownlink.Item(sessionId: id, kind: .ttsStop, turn: turn.number, payload: []),
            ])
            return
        case .aborted:
            return
        case .answered, .listening:
            break
        }
        guard !isAborted(turn.number) else { return }
        try await publish([VoiceDownlink.Item(sessionId: id, kind: .ttsStop, turn: turn.number, payload: [])])
        if firstAudioSent { await recordTiming(timing) }
    }

    /// The device's last answered turn, for the devices page (after the answer: never on its path).
    private func recordTiming(_ timing: VoiceTurnTiming) async {
        guard !route.deviceId.isEmpty else { return }
        var timing = timing
        timing.at = Clock.epochMilliseconds()
        do {
            try await DeviceTurnTimings(redis: owner.context.redis).record(timing, device: route.deviceId)
        } catch {
            logger.warning("turn timing not recorded", metadata: ["error": "\(error)"])
        }
    }

    /// Where following a turn's answer stands.
    enum AnswerStep: Equatable {
        case listening
        case answered
        case aborted
        case rejected(String)
    }

    private func interruptConversation() async throws {
        let payload = ChatInterruptRequested(
            conversationId: route.conversationId, userId: route.userId, requestId: UUID().uuidString.lowercased(),
            gateway: route.gateway)
        try await owner.context.publish(
            owner.context.envelope(payload, routingKey: route.conversationId), to: Topics.chatRequests)
    }

    static func data(of message: ChannelWire.Message) -> [String: Any]? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(message.frameJSON.utf8)) as? [String: Any]
        else { return nil }
        return object["data"] as? [String: Any]
    }

    // MARK: downlink

    private func json(_ message: Xiaozhi.Message, turn: Int64) -> VoiceDownlink.Item {
        VoiceDownlink.Item(sessionId: id, kind: .json, turn: turn, payload: Array(message.json().utf8))
    }

    /// Items in order to the gateway holding the device's socket, in one pipeline (one connection, so
    /// their order is kept).
    ///
    /// While Redis cannot be reached the turn waits for it (up to the answer timeout) instead of failing:
    /// the device hears its answer late rather than not at all.
    private static let redisWait = Backoff(initial: .milliseconds(50), maximum: .seconds(1))

    private func publish(_ items: [VoiceDownlink.Item]) async throws {
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

    private func send(_ kind: VoiceDownlink.Kind, turn: Int64, payload: [UInt8]) async {
        do {
            try await publish([VoiceDownlink.Item(sessionId: id, kind: kind, turn: turn, payload: payload)])
        } catch {
            logger.warning("downlink failed", metadata: ["error": "\(error)"])
        }
    }
}

extension Metrics.Timer {
    /// Records the time since `start` and returns it.
    @discardableResult
    func recordInterval(since start: ContinuousClock.Instant, clock: ContinuousClock) -> Duration {
        let elapsed = clock.now - start
        recordNanoseconds(elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        return elapsed
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}

/// What a device says in manual mode (between `listen start` and `listen stop`), bounded: a device that
/// never says stop cannot grow a session's memory without end.
struct ManualRecording: Sendable {
    /// 30 s of 16 kHz mono (≈ 940 KiB of samples).
    static let maxSamples = 30 * 16_000
    static let fullMessage = "manual listening is limited to 30 s; what was heard so far is answered"

    private(set) var samples: [Int16] = []

    /// False (and nothing added) once `pcm` would pass the bound.
    mutating func append(_ pcm: [Int16]) -> Bool {
        guard samples.count + pcm.count <= Self.maxSamples else { return false }
        samples += pcm
        return true
    }

    mutating func removeAll() { samples.removeAll() }
}
