import Foundation
import SwitchboardContracts
import SwitchboardVoice
import Testing

/// The xiaozhi protocol as values: exact bytes of the binary framings, the JSON messages both ways,
/// the device token.
@Suite struct VoiceProtocolTests {
    @Test func deviceHelloDecodes() throws {
        let text =
            #"{"type":"hello","version":1,"features":{"mcp":true,"aec":true},"transport":"websocket","audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}"#
        let message = try Xiaozhi.Message.parse(text)
        #expect(message.type == "hello")
        #expect(message.version == 1)
        #expect(message.features == ["mcp": true, "aec": true])
        #expect(message.audioParams == .uplink)
    }

    @Test func serverMessagesEncodeAsTheFirmwareReadsThem() throws {
        #expect(
            Xiaozhi.Message.serverHello(sessionId: "s1").json()
                == #"{"audio_params":{"channels":1,"format":"opus","frame_duration":60,"sample_rate":24000},"session_id":"s1","transport":"websocket","type":"hello"}"#
        )
        #expect(
            Xiaozhi.Message.stt("hello world", sessionId: "s1").json()
                == #"{"session_id":"s1","text":"hello world","type":"stt"}"#)
        #expect(
            Xiaozhi.Message.tts(.start, sessionId: "s1").json() == #"{"session_id":"s1","state":"start","type":"tts"}"#)
        #expect(
            Xiaozhi.Message.tts(.sentenceStart, text: "Hi.", sessionId: "s1").json()
                == #"{"session_id":"s1","state":"sentence_start","text":"Hi.","type":"tts"}"#)
        #expect(
            Xiaozhi.Message.tts(.stop, sessionId: "s1").json() == #"{"session_id":"s1","state":"stop","type":"tts"}"#)
        #expect(
            Xiaozhi.Message.llm(emotion: "happy", text: "😀", sessionId: "s1").json()
                == #"{"emotion":"happy","session_id":"s1","text":"😀","type":"llm"}"#)
        #expect(Xiaozhi.Message.pong(timestamp: 5, sessionId: nil).json() == #"{"timestamp":5,"type":"pong"}"#)
    }

    @Test(arguments: [Xiaozhi.ListenMode.auto, .manual, .realtime])
    func listenMessagesRoundTrip(mode: Xiaozhi.ListenMode) throws {
        for state in [Xiaozhi.ListenState.start, .stop] {
            let message = Xiaozhi.Message.listen(state, mode: mode, sessionId: "s")
            let parsed = try Xiaozhi.Message.parse(message.json())
            #expect(parsed.listenState == state)
            #expect(parsed.mode == mode)
        }
        let detect = try Xiaozhi.Message.parse(#"{"session_id":"s","type":"listen","state":"detect","text":"你好小智"}"#)
        #expect(detect.listenState == .detect)
        #expect(detect.text == "你好小智")
    }

    @Test func abortAndMCPAndTTSParse() throws {
        let abort = try Xiaozhi.Message.parse(#"{"session_id":"s","type":"abort","reason":"wake_word_detected"}"#)
        #expect(abort.type == "abort" && abort.reason == "wake_word_detected")
        let mcp = try Xiaozhi.Message.parse(
            #"{"session_id":"s","type":"mcp","payload":{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}}"#)
        #expect(mcp.payload?.json == #"{"id":1,"jsonrpc":"2.0","result":{"tools":[]}}"#)
        // The payload survives a re-encode.
        #expect(try Xiaozhi.Message.parse(mcp.json()).payload == mcp.payload)
        let end = try Xiaozhi.Message.parse(#"{"type":"tts","state":"sentence_end"}"#)
        #expect(end.ttsState == .sentenceEnd)
    }

    @Test func malformedJSONIsAProtocolError() {
        #expect(throws: Xiaozhi.ProtocolError.self) { try Xiaozhi.Message.parse("not json") }
        #expect(throws: Xiaozhi.ProtocolError.self) { try Xiaozhi.Message.parse(#"{"state":"start"}"#) }
        #expect(throws: Xiaozhi.ProtocolError.self) {
            try Xiaozhi.Message.parse(String(repeating: " ", count: Xiaozhi.maxJSONBytes + 1))
        }
    }

    @Test func version1IsTheRawPacket() throws {
        let framing = try Xiaozhi.BinaryProtocol(version: 1)
        #expect(framing.encodeAudio([1, 2, 3]) == [1, 2, 3])
        #expect(try framing.decode([1, 2, 3]) == .audio([1, 2, 3], timestamp: 0))
    }

    @Test func version2HasA16ByteBigEndianHeader() throws {
        let framing = try Xiaozhi.BinaryProtocol(version: 2)
        let bytes = framing.encodeAudio([0xAA, 0xBB], timestamp: 0x0102_0304)
        #expect(bytes == [0, 2, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 2, 0xAA, 0xBB])
        #expect(try framing.decode(bytes) == .audio([0xAA, 0xBB], timestamp: 0x0102_0304))
        #expect(try framing.decode(framing.encodeJSON("{}")) == .json("{}"))
        // A size that does not match, a wrong version, a short header.
        #expect(throws: Xiaozhi.ProtocolError.self) {
            try framing.decode([0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 1])
        }
        #expect(throws: Xiaozhi.ProtocolError.self) {
            try framing.decode([0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
        }
        #expect(throws: Xiaozhi.ProtocolError.self) { try framing.decode([0, 2, 0]) }
    }

    @Test func version3HasA4ByteHeader() throws {
        let framing = try Xiaozhi.BinaryProtocol(version: 3)
        let bytes = framing.encodeAudio([9, 8, 7])
        #expect(bytes == [0, 0, 0, 3, 9, 8, 7])
        #expect(try framing.decode(bytes) == .audio([9, 8, 7], timestamp: 0))
        #expect(framing.encodeJSON("{}") == [1, 0, 0, 2, 0x7B, 0x7D])
        #expect(throws: Xiaozhi.ProtocolError.self) { try framing.decode([0, 0, 0, 5, 1]) }
        #expect(throws: Xiaozhi.ProtocolError.self) { try framing.decode([7, 0, 0, 1, 1]) }
    }

    @Test func oversizedAudioAndUnknownVersionsAreRefused() throws {
        let framing = try Xiaozhi.BinaryProtocol(version: 1)
        #expect(throws: Xiaozhi.ProtocolError.self) {
            try framing.decode([UInt8](repeating: 1, count: Xiaozhi.maxAudioPacketBytes + 1))
        }
        #expect(throws: Xiaozhi.ProtocolError.self) { try Xiaozhi.BinaryProtocol(version: 4) }
        #expect(throws: Xiaozhi.ProtocolError.self) { try Xiaozhi.BinaryProtocol(version: 0) }
    }

    @Test func deviceTokenVerifiesOnlyItsDeviceWithinItsLifetime() {
        let tokens = Xiaozhi.DeviceToken(secret: "a-secret-of-at-least-thirty-two-bytes!!")
        let token = tokens.mint(clientId: "c1", deviceId: "aa:bb", at: 1_000_000)
        #expect(Xiaozhi.DeviceToken.looksLikeDeviceToken(token))
        #expect(!Xiaozhi.DeviceToken.looksLikeDeviceToken("a.b.c"))
        #expect(token.hasSuffix(".1000000"))
        #expect(!token.contains("=") && !token.contains("+") && !token.contains("/"))
        #expect(tokens.verify(token, clientId: "c1", deviceId: "aa:bb", now: 1_000_100))
        #expect(!tokens.verify(token, clientId: "c1", deviceId: "aa:cc", now: 1_000_100))
        #expect(!tokens.verify(token, clientId: "c2", deviceId: "aa:bb", now: 1_000_100))
        #expect(
            !tokens.verify(
                token, clientId: "c1", deviceId: "aa:bb", now: 1_000_000 + Xiaozhi.DeviceToken.lifetimeSeconds + 1))
        #expect(
            !Xiaozhi.DeviceToken(secret: "another-secret-of-at-least-32-bytes!!").verify(
                token, clientId: "c1", deviceId: "aa:bb", now: 1_000_100))
    }

    @Test func downlinkItemsRoundTripBinarySafely() {
        let item = VoiceDownlink.Item(sessionId: "s-1", kind: .audio, turn: 7, payload: [0, 10, 255, 32, 10])
        #expect(VoiceDownlink.decode(VoiceDownlink.encode(item)) == item)
        #expect(VoiceDownlink.decode(Array("s x 1\n".utf8)) == nil)
    }

    /// The devices API's `lastTurn` as the console reads it: stages in milliseconds, absent ones left out.
    @Test func aTurnTimingEncodesTheStagesItHas() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let typed = VoiceTurnTiming(at: 1_765_000_000_000, llmFirstTokenMs: 96, ttsFirstAudioMs: 231, totalMs: 400)
        #expect(
            String(decoding: try encoder.encode(typed), as: UTF8.self)
                == #"{"at":1765000000000,"llmFirstTokenMs":96,"totalMs":400,"ttsFirstAudioMs":231}"#)
        let spoken =
            #"{"asrMs":412,"at":1,"endOfUtteranceMs":0,"llmFirstTokenMs":96,"totalMs":790,"ttsFirstAudioMs":231}"#
        #expect(
            try JSONDecoder().decode(VoiceTurnTiming.self, from: Data(spoken.utf8))
                == VoiceTurnTiming(
                    at: 1, endOfUtteranceMs: 0, asrMs: 412, llmFirstTokenMs: 96, ttsFirstAudioMs: 231, totalMs: 790))
    }
}

/// Opus, the VAD, the pacer, the sentence splitter: plain values, no I/O.
@Suite struct VoicePipelineTests {
    static func tone(frequency: Double, amplitude: Double, milliseconds: Int, rate: Int = 16_000) -> [Int16] {
        (0..<(rate * milliseconds / 1000)).map {
            Int16(amplitude * sin(2 * .pi * frequency * Double($0) / Double(rate)))
        }
    }

    @Test func opusRoundTripsAt16And24Kilohertz() throws {
        for format in [AudioFormat.uplink, .downlink] {
            let encoder = try OpusEncoder(format: format)
            let decoder = try OpusDecoder(format: format)
            let input = Self.tone(frequency: 440, amplitude: 8000, milliseconds: 600, rate: format.sampleRate)
            let packets = try encoder.encodeAll(input)
            #expect(packets.count == 10)
            var output: [Int16] = []
            for packet in packets { output += try decoder.decode(packet) }
            #expect(output.count == input.count)
            #expect(VoiceActivityDetector.rms(output) > 3000)
        }
    }

    @Test func corruptOpusThrowsAndTheDecoderGoesOn() throws {
        let decoder = try OpusDecoder(format: .uplink)
        #expect(throws: OpusError.self) { try decoder.decode([]) }
        #expect(throws: OpusError.self) { try decoder.decode([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]) }
        let packet = try OpusEncoder(format: .uplink).encode(
            Self.tone(frequency: 300, amplitude: 5000, milliseconds: 60)[...])
        #expect(try decoder.decode(packet).count == 960)
    }

    @Test func vadFindsAnUtteranceWithPreRollAndEndsAfterTheSilence() {
        var configuration = VoiceActivityDetector.Configuration()
        configuration.minSilenceMilliseconds = 600
        configuration.preRollMilliseconds = 600
        var vad = VoiceActivityDetector(configuration: configuration)
        let noise = Self.tone(frequency: 50, amplitude: 60, milliseconds: 60)
        let speech = Self.tone(frequency: 300, amplitude: 6000, milliseconds: 60)
        var events: [VoiceActivityDetector.Event] = []
        for _ in 0..<20 { if let event = vad.process(noise) { events.append(event) } }
        #expect(events.isEmpty)
        for _ in 0..<15 { if let event = vad.process(speech) { events.append(event) } }
        #expect(events == [.speechStarted])
        // Not yet: 540 ms of silence.
        for _ in 0..<9 { if let event = vad.process(noise) { events.append(event) } }
        #expect(events.count == 1)
        if let event = vad.process(noise) { events.append(event) }
        guard case .utteranceEnded(let samples, let trailing) = events.last else {
            Issue.record("no end of utterance: \(events)")
            return
        }
        #expect(trailing == 10 * 960)
        // Pre-roll (the 600 ms up to the third voiced frame, which started speech) + speech + silence.
        #expect(samples.count == (10 + 12 + 10) * 960)
    }

    @Test func vadFollowsARisingNoiseFloor() {
        var vad = VoiceActivityDetector()
        let quiet = Self.tone(frequency: 50, amplitude: 100, milliseconds: 60)
        let hum = Self.tone(frequency: 50, amplitude: 450, milliseconds: 60)
        for _ in 0..<20 { _ = vad.process(quiet) }
        // A steady louder hum is at first speech-like, then the floor learns it: it must not stay
        // speech forever, nor start utterance after utterance.
        var started = 0
        for _ in 0..<400 { if vad.process(hum) == .speechStarted { started += 1 } }
        #expect(vad.noiseFloor > 100)
        #expect(started <= 1)
    }

    @Test func manualFlushEndsWhatWasHeard() {
        var vad = VoiceActivityDetector()
        #expect(vad.flush() == nil)
        for _ in 0..<5 { _ = vad.process(Self.tone(frequency: 300, amplitude: 6000, milliseconds: 60)) }
        guard case .utteranceEnded = vad.flush() else {
            Issue.record("flush after speech ends the utterance")
            return
        }
    }

    @Test func pacerBurstsFiveThenOnePerFrame() {
        var pacer = DownlinkPacer()
        let start = ContinuousClock.now
        var sends: [Duration] = []
        var now = start
        for _ in 0..<8 {
            let at = pacer.sendTime(now: now)
            now = at > now ? at : now
            pacer.sent(at: now)
            sends.append(now - start)
        }
        #expect(sends == [0, 0, 0, 0, 0, 60, 120, 180].map { Duration.milliseconds($0) })
        // tts stop after the last frame played: 8 frames × 60 ms.
        #expect(pacer.drainedTime(now: now) - start == .milliseconds(480))
    }

    @Test func pacerStartsANewBurstAfterAStall() {
        var pacer = DownlinkPacer()
        let start = ContinuousClock.now
        for _ in 0..<5 { pacer.sent(at: start) }
        // The device played it all; the next sentence comes 1 s later.
        let later = start + .seconds(1)
        for _ in 0..<5 {
            #expect(pacer.sendTime(now: later) == later)
            pacer.sent(at: later)
        }
        #expect(pacer.sendTime(now: later) == later + .milliseconds(60))
        pacer.reset()
        #expect(pacer.sendTime(now: later) == later)
    }

    @Test func sentencesCutAtTheFirstCommaThenAtSentenceEnds() {
        var splitter = SentenceSplitter()
        var pieces: [String] = []
        for token in ["Hello ", "there, ", "this ", "is ", "one. ", "And, ", "two! ", "Three ", "3.5 ", "more"] {
            pieces += splitter.append(token)
        }
        if let rest = splitter.finish() { pieces.append(rest) }
        #expect(pieces == ["Hello there,", "this is one.", "And, two!", "Three 3.5 more"])
    }

    @Test func chineseSentencesCutWithoutSpaces() {
        var splitter = SentenceSplitter()
        var pieces = splitter.append("你好呀，今天天气很好。明天")
        if let rest = splitter.finish() { pieces.append(rest) }
        #expect(pieces == ["你好呀，", "今天天气很好。", "明天"])
    }

    @Test func resamplingKeepsDurationAndLevel() {
        let input = Self.tone(frequency: 200, amplitude: 8000, milliseconds: 1000, rate: 22_050)
        let output = Resampler.resample(input, from: 22_050, to: 16_000)
        #expect(abs(output.count - 16_000) <= 1)
        #expect(abs(VoiceActivityDetector.rms(output) - VoiceActivityDetector.rms(input)) < 400)
        #expect(abs(Resampler.resample(input, from: 22_050, to: 24_000).count - 24_000) <= 1)
    }

    @Test func wavParsesESpeakOutput() throws {
        // RIFF header with eSpeak's unknown (0x7FFFFFFF) sizes when writing to a pipe.
        var bytes = Array("RIFF".utf8) + [0xFF, 0xFF, 0xFF, 0x7F] + Array("WAVE".utf8)
        bytes += Array("fmt ".utf8) + [16, 0, 0, 0, 1, 0, 1, 0, 0x22, 0x56, 0, 0, 0x44, 0xAC, 0, 0, 2, 0, 16, 0]
        bytes += Array("data".utf8) + [0xFF, 0xFF, 0xFF, 0x7F] + [1, 0, 0xFF, 0xFF]
        let audio = try WAV.parse(bytes)
        #expect(audio.sampleRate == 22_050)
        #expect(audio.samples == [1, -1])
    }
}
