import Foundation
import Logging
import Metrics
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTracing
import SwitchboardVoice

extension VoiceSession {
    /// What the device shows for a turn the conversation did not take, by MESSAGE_REJECTED's reason.
    static func notAnswered(_ reason: String) -> String {
        switch reason {
        case "busy": "still answering the last question; ask again in a moment"
        case "queue_full": "too many questions are waiting; ask again in a moment"
        default: "the question was not answered (\(reason))"
        }
    }

    func speakerLoop() async {
        var iterator = speaker.makeAsyncIterator()
        while let input = await iterator.next() {
            guard case .turn(let turn) = input, !isAborted(turn.number) else { continue }
            do {
                // The root of the turn's trace: its asr, llm and tts spans, and the conversation's answer.
                try await Tracing.withSpan(
                    "voice turn", kind: .server, parent: .root,
                    attributes: [
                        ("switchboard.voice.session_id", .string(id)), ("switchboard.voice.turn", .int(turn.number)),
                    ]
                ) {
                    try await speak(turn, iterator: &iterator)
                }
            } catch {
                VoiceWorkerMetrics.turnFailures.increment()
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
        VoiceWorkerMetrics.turns.increment()
        let clock = ContinuousClock()
        let encoder = try OpusEncoder(format: .downlink)
        var firstAudioSent = false
        var sentTTSStart = false
        // The stages of this turn, as the metrics below time them, kept for the devices page.
        var timing = VoiceTurnTiming(at: 0)
        func speakText(_ text: String) async throws {
            let synthesisStart = clock.now
            let pcm = try await Tracing.withSpan(
                "tts",
                attributes: [
                    ("switchboard.voice.engine", .string(owner.settings.ttsEngine.rawValue)),
                    ("switchboard.voice.characters", .int(Int64(text.count))),
                ]
            ) {
                try await owner.engines.synthesizer.synthesize(text, sampleRate: 24_000)
            }
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
                    VoiceWorkerMetrics.ttsFirstAudio.recordInterval(since: synthesisStart, clock: clock)
                    .milliseconds
                if turn.audio != nil {
                    timing.totalMs =
                        VoiceWorkerMetrics.voiceToVoice.recordInterval(since: turn.stoppedSpeakingAt, clock: clock)
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
                VoiceWorkerMetrics.endOfUtterance.recordInterval(since: turn.stoppedSpeakingAt, clock: clock)
                .milliseconds
            if let folder = owner.settings.recordDirectory {
                do {
                    try await TurnRecorder.write(audio, to: folder, name: "\(id)-\(turn.number).wav")
                } catch {
                    logger.warning("turn audio not recorded", metadata: ["error": "\(error)"])
                }
            }
            let start = clock.now
            text = try await Tracing.withSpan(
                "asr",
                attributes: [
                    ("switchboard.voice.engine", .string(owner.settings.asrEngine.rawValue)),
                    ("switchboard.voice.audio_ms", .int(Int64(audio.count / 16))),
                ]
            ) {
                try await owner.engines.recognizer.transcribe(audio, sampleRate: 16_000)
            }
            timing.asrMs = VoiceWorkerMetrics.asrTime.recordInterval(since: start, clock: clock).milliseconds
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
        // Where the conversation stood before the question: what the subscription misses (a gap, or Redis
        // went away while the answer streamed) is read from the channel's stream after that offset. Unknown
        // (Redis was down when the question was asked, or the channel is new), the first live event has
        // the stream read from its start: earlier answers' events name other messages and are passed over.
        let channel = Channel.conversation(route.conversationId)
        let history = ChannelHistory(redis: owner.context.redis)
        var sequencer = ChannelSequencer()
        _ = sequencer.finishRecovery(since: nil, top: try? await history.read(channel, after: nil).top, history: [])
        var generation = owner.subscriber.connectionGeneration
        // The conversation's answer, from the question to its end: the turn's `llm` span, the question's
        // parent. Ended below; a turn that ends before its answer ends it here.
        var answering = OpenSpan(
            "llm", kind: .client, attributes: [("switchboard.conversation.id", .string(route.conversationId))])
        defer { answering?.end(error: "the turn ended before its answer") }
        try await Tracing.within(answering) {
            try await owner.context.publish(
                owner.context.envelope(payload, routingKey: route.conversationId), to: Topics.chatRequests)
        }
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
            switch message.frameType {
            case MessageStreamStart.frameType:
                if let start = message.payload(MessageStreamStart.self), start.inReplyTo == messageID {
                    replyID = start.messageId
                }
            case MessageStreamChunk.frameType:
                // An agent's chunk or the orchestrator's own: read as the fields both carry.
                guard let replyID, let chunk = message.payload(FallbackReplyChunk.self), chunk.messageId == replyID
                else { return .listening }
                if !firstToken {
                    firstToken = true
                    timing.llmFirstTokenMs =
                        VoiceWorkerMetrics.llmFirstToken.recordInterval(since: submittedAt, clock: clock)
                        .milliseconds
                }
                for sentence in splitter.append(chunk.chunk) {
                    try await speakSentence(sentence)
                    if isAborted(turn.number) { return .aborted }
                }
            case MessageStreamEnd.frameType:
                guard let replyID, message.payload(MessageStreamEnd.self)?.messageId == replyID else {
                    return .listening
                }
                if let rest = splitter.finish() { try await speakSentence(rest) }
                return .answered
            case MessageRejected.frameType:
                // Not answered (the conversation is busy or its queue full): the device hears why at
                // once instead of waiting out the answer timeout.
                guard let rejected = message.payload(MessageRejected.self), rejected.messageId == messageID else {
                    return .listening
                }
                return .rejected(rejected.reason)
            default:
                break
            }
            return .listening
        }
        /// The events after the last one followed, from the channel's stream, then the live ones held
        /// meanwhile. When the stream no longer has them all (trimmed, another epoch), what it has.
        func catchUp(from: (offset: Int64, epoch: String?)) async throws -> AnswerStep {
            let read = try await history.read(channel, after: from.offset)
            let events: [ChannelWire.Message]
            switch sequencer.finishRepair(from: from, top: read.top, history: read.events) {
            case .recovered(let recovered):
                events = recovered
            case .notRecovered(let live):
                // Up to the top the sequencer now stands at; the live ones come after it.
                events = read.events.filter { $0.offset <= sequencer.lastOffset } + live
            }
            for message in events {
                let step = try await handle(message)
                if step != .listening { return step }
            }
            return .listening
        }
        /// A live event: one already followed is dropped; one after a gap first has the missed ones read.
        func follow(_ message: ChannelWire.Message) async throws -> AnswerStep {
            // Typing and presence: no part of an answer, and no place in the channel's order.
            guard !message.isEphemeral else { return .listening }
            if sequencer.epoch != nil {
                switch sequencer.receiveLive(message) {
                case .deliver(let message): return try await handle(message)
                case .hold, .dropDuplicate: return .listening
                case .gap: break
                }
            }
            guard let from = sequencer.beginRepair(holding: message) else { return .listening }
            return try await catchUp(from: from)
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
                    if let from = sequencer.beginRepair() { step = try await catchUp(from: from) }
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
        answering?.end(attributes: [("switchboard.voice.answer", .string("\(step)"))])
        answering = nil
        switch step {
        case .rejected(let reason):
            VoiceWorkerMetrics.turnsRejected.increment()
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
}
