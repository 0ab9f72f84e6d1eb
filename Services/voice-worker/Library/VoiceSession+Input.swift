import Foundation
import Metrics
import SwitchboardContracts
import SwitchboardVoice
import Synchronization

extension VoiceSession {
    /// Half of the last 40 packets undecodable (or not 60 ms): a broken encoder, not a glitch; closed.
    static let decodeWindow = 40
    static let maxDecodeErrorsInWindow = 20

    func inputLoop() async {
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
                VoiceWorkerMetrics.inputQueueDepth.record(Self.queued.subtract(1, ordering: .relaxed).newValue)
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
                        VoiceWorkerMetrics.decodeErrors.increment()
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
                    VoiceWorkerMetrics.packetsDecoded.increment()
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

    /// Listening state of the device as the session sees it.
    struct ListenState {
        var listening = false
        var mode: Xiaozhi.ListenMode = .auto
        var speaking = false
    }
}
