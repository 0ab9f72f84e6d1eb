import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTestSupport
import SwitchboardVoice
import Testing

/// xiaozhi devices through the real services: OTA, the WebSocket, eSpeak speech in, PocketSphinx,
/// the conversation's agents, eSpeak speech out, paced at the gateway.
@Suite(.serialized, .timeLimit(.minutes(6)))
struct VoiceFlowTests {
    struct Stack: Sendable {
        var processes: ServiceProcesses
        var httpBase: String
        var webSocketURL: String
        var authority: TokenAuthority
    }

    static func withVoiceStack(
        voiceEnvironment: [String: String] = [:], gatewayEnvironment: [String: String] = [:],
        orchestratorEnvironment: [String: String] = [:], agentEnvironment: [String: String] = [:],
        everyService: [String: String] = [:], _ body: (Stack) async throws -> Void
    ) async throws {
        // The chat stack with its defaults (a fast offline engine), seen from the device side.
        try await ServiceProcesses.withStack(
            gatewayEnvironment: gatewayEnvironment, orchestratorEnvironment: orchestratorEnvironment,
            agentEnvironment: agentEnvironment,
            voiceEnvironment: voiceEnvironment, everyService: everyService
        ) { stack, url, authority in
            let port = URL(string: url)!.port!
            try await body(
                Stack(
                    processes: stack, httpBase: "http://127.0.0.1:\(port)",
                    webSocketURL: "ws://127.0.0.1:\(port)/xiaozhi/v1/", authority: authority))
        }
    }

    /// The device's first request: OTA with Device-Id and Client-Id (a token only once it is bound).
    static func ota(_ base: String, deviceID: String, clientID: String) async throws -> (
        url: String, token: String?, body: [String: Any]
    ) {
        var request = URLRequest(url: URL(string: "\(base)/xiaozhi/ota/")!)
        request.httpMethod = "POST"
        request.setValue(deviceID, forHTTPHeaderField: "Device-Id")
        request.setValue(clientID, forHTTPHeaderField: "Client-Id")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(#"{"application":{"version":"1.6.0"},"mac_address":"\#(deviceID)"}"#.utf8)
        let (data, response) = try await URLSession.shared.data(for: request)
        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        let body = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let websocket = try #require(body["websocket"] as? [String: Any])
        return (try #require(websocket["url"] as? String), websocket["token"] as? String, body)
    }

    static func deviceID() -> String {
        (0..<6).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined(separator: ":")
    }

    /// Hello both ways; returns the session id.
    static func hello(_ device: DeviceSimulator) async throws -> String {
        device.send(.deviceHello())
        let hello = try #require(await device.waitFor(type: "hello", within: .seconds(10)))
        #expect(hello.transport == "websocket")
        #expect(hello.audioParams == .downlink)
        return try #require(hello.sessionId)
    }

    /// Checks the answer's shape: tts start, then sentence_start before its audio, then tts stop; every
    /// frame decodes to 60 ms at 24 kHz; frames after the first five arrive about 60 ms apart.
    static func checkSpokenAnswer(_ received: [DeviceSimulator.Received]) throws {
        let messages = received.compactMap(\.message)
        let start = try #require(received.firstIndex { $0.message?.ttsState == .start })
        let firstSentence = try #require(received.firstIndex { $0.message?.ttsState == .sentenceStart })
        let firstAudio = try #require(received.firstIndex { $0.audio != nil })
        let stop = try #require(received.lastIndex { $0.message?.ttsState == .stop })
        #expect(start < firstSentence && firstSentence < firstAudio && firstAudio < stop)
        #expect(!received[(stop + 1)...].contains { $0.audio != nil })
        #expect(messages.filter { $0.type == "llm" }.count == 1)
        let frames = received.filter { $0.audio != nil }
        let decoder = try OpusDecoder(format: .downlink)
        var samples = 0
        for frame in frames {
            let pcm = try decoder.decode(frame.audio!)
            #expect(pcm.count == 1440)
            samples += pcm.count
        }
        #expect(samples == frames.count * 1440)
        // Pacing: a burst of five, then ~60 ms per frame; tts stop once everything has played.
        guard frames.count > 8 else { return }
        // The device plays each frame for 60 ms: what it holds on each arrival never exceeds the burst
        // (after a stall, when it has played everything, a new burst is allowed; 120 ms for arrival jitter).
        var playbackEnd = frames[0].at
        var mostHeld = Duration.zero
        for frame in frames {
            playbackEnd = max(playbackEnd, frame.at) + .milliseconds(60)
            mostHeld = max(mostHeld, playbackEnd - frame.at)
        }
        #expect(
            mostHeld <= .milliseconds(5 * 60 + 120), "frames came faster than real time: the device held \(mostHeld)")
        var gaps = zip(frames.dropFirst(5), frames.dropFirst(4)).map { $0.at - $1.at }
        gaps.sort()
        let median = gaps[gaps.count / 2]
        #expect(median >= .milliseconds(45) && median <= .milliseconds(75), "median gap \(median)")
        let playback = received[stop].at - frames[0].at
        #expect(
            playback >= .milliseconds(60 * frames.count) - .milliseconds(120),
            "tts stop came \(playback) after the first frame")
    }

    @Test func aSpokenQuestionIsRecognisedAnsweredAndSpokenBackPaced() async throws {
        try await Self.withVoiceStack { stack in
            let deviceID = Self.deviceID()
            let clientID = UUID().uuidString
            // Bound to a user first (DeviceActivationFlowTests has the flow's details).
            let owner = try await stack.authority.mint(user: "speaker-\(UUID().uuidString.prefix(8))")
            _ = try await DeviceActivationFlowTests.bind(
                stack.httpBase, deviceID: deviceID, clientID: clientID, user: owner)
            let (url, otaToken, body) = try await Self.ota(stack.httpBase, deviceID: deviceID, clientID: clientID)
            let token = try #require(otaToken)
            #expect(url == stack.webSocketURL)
            #expect((body["server_time"] as? [String: Any])?["timestamp"] != nil)
            let speech = try await DeviceSimulator.speech("good morning")
            let (result, _) = try await DeviceSimulator.connect(
                url: url, token: token, deviceID: deviceID, clientID: clientID
            ) {
                device -> [DeviceSimulator.Received] in
                let session = try await Self.hello(device)
                return try await Self.sayAndHear(device, session: session, speech)
            }
            let received = try #require(result)
            let stt = try #require(received.compactMap(\.message).first { $0.type == "stt" })
            let text = (stt.text ?? "").lowercased()
            #expect(text.contains("good") && text.contains("morning"), "recognised \(text)")
            let sttIndex = try #require(received.firstIndex { $0.message?.type == "stt" })
            let startIndex = try #require(received.firstIndex { $0.message?.ttsState == .start })
            #expect(sttIndex < startIndex)
            try Self.checkSpokenAnswer(received)
            // The answer is the conversation's: the offline agent quotes what it heard.
            let sentences = received.compactMap(\.message).filter { $0.ttsState == .sentenceStart }.compactMap(\.text)
            #expect(sentences.joined(separator: " ").lowercased().contains("morning"))
            let metrics = try await Self.metrics(stack, service: "voice-worker")
            #expect(metrics.contains("sb_voice_voice_to_voice_seconds"))
            #expect(metrics.contains("sb_voice_asr_seconds"))
            // The same turn's stages in the devices API (docs/voice.md#latency): consecutive intervals
            // inside the total, the user's wait from their last word to the first audio.
            let listed = try await DeviceActivationFlowTests.call(
                "GET", "\(stack.httpBase)/api/v1/devices", headers: ["Authorization": "Bearer \(owner)"])
            let device = try #require((listed.json["devices"] as? [[String: Any]])?.first)
            let lastTurn = try #require(device["lastTurn"] as? [String: Any], "\(device)")
            let stages = ["endOfUtteranceMs", "asrMs", "llmFirstTokenMs", "ttsFirstAudioMs"].map {
                lastTurn[$0] as? Int ?? -1
            }
            let total = lastTurn["totalMs"] as? Int ?? -1
            #expect(stages.allSatisfy { $0 >= 0 } && stages[1] > 0, "\(lastTurn)")
            #expect(total >= stages.reduce(0, +), "\(lastTurn)")
            let recordedAt = lastTurn["at"] as? Int ?? 0
            #expect(abs(Int(Clock.epochMilliseconds()) - recordedAt) < 120_000, "\(lastTurn)")
        }
    }

    /// A device that announces 24 kHz, 20 ms frames in its hello is taken, not closed: the server's
    /// hello says what it sends (24 kHz, 60 ms), the voice-worker decodes at the device's rate and
    /// resamples, and what it decoded (its turn recording) matches the device's PCM after Opus.
    @Test func aDeviceWithOtherAudioParametersIsResampledAndHeardUndamaged() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("turns-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try await Self.withVoiceStack(voiceEnvironment: ["SWITCHBOARD_VOICE_RECORD_DIR": folder.path]) { stack in
            let format = AudioFormat(sampleRate: 24_000, frameDurationMilliseconds: 20)
            let pcm = try await DeviceSimulator.pcm("good morning", sampleRate: format.sampleRate)
            let packets = try OpusEncoder(format: format, bitrate: 32_000).encodeAll(pcm)
            let token = try await stack.authority.mint(user: "wideband-\(UUID().uuidString.prefix(8))")
            let (result, _) = try await DeviceSimulator.connect(
                url: stack.webSocketURL, token: token, deviceID: Self.deviceID()
            ) {
                device -> (String, [DeviceSimulator.Received]) in
                device.send(.deviceHello(audio: Xiaozhi.AudioParams(sampleRate: format.sampleRate, frameDuration: 20)))
                let hello = try #require(await device.waitFor(type: "hello", within: .seconds(10)))
                #expect(hello.audioParams == .downlink)
                let session = try #require(hello.sessionId)
                // Manual mode: the turn is exactly what the device sent between start and stop.
                device.send(.listen(.start, mode: .manual, sessionId: session))
                try await device.stream(packets, interval: .milliseconds(20))
                device.send(.listen(.stop, sessionId: session))
                return (session, await device.collect(idle: .seconds(30)) { $0.message?.ttsState == .stop })
            }
            let (session, received) = try #require(result)
            let stt = try #require(received.compactMap(\.message).first { $0.type == "stt" })
            #expect((stt.text ?? "").lowercased().contains("morning"), "recognised \(stt.text ?? "")")
            try Self.checkSpokenAnswer(received)
            // What the voice-worker decoded against what the device recorded (at 16 kHz).
            let recorded = try WAV.parse(Array(try Data(contentsOf: folder.appendingPathComponent("\(session)-1.wav"))))
            #expect(recorded.sampleRate == 16_000)
            // 1. Nothing between the device and the decoder changes a bit: the voice-worker heard exactly
            //    what a decoder next to the device makes of its packets.
            let decoder = try OpusDecoder(format: format)
            var framer = UplinkFramer(sourceRate: format.sampleRate)
            var local: [Int16] = []
            for packet in packets { local += framer.push(try decoder.decode(packet)).joined() }
            #expect(
                recorded.samples == local, "\(recorded.samples.count) samples heard, \(local.count) decoded locally")
            // 2. Against the device's own PCM (resampled to 16 kHz), only the codec's loss is left.
            let reference = Resampler.resample(pcm, from: format.sampleRate, to: 16_000)
            #expect(
                abs(recorded.samples.count - reference.count) <= 960,
                "\(recorded.samples.count) vs \(reference.count) samples")
            let (db, lag) = AudioQuality.snr(
                reference: Array(reference.dropFirst(1_600)), decoded: Array(recorded.samples.dropFirst(1_600)))
            #expect(db >= 10, "SNR \(db) dB at lag \(lag)")
        }
    }

    @Test func twoDevicesTalkingAtOnceEachHearOnlyTheirOwnAnswer() async throws {
        try await Self.withVoiceStack { stack in
            let speech = try await DeviceSimulator.speech("good morning")
            let questions = ["tell me about the red kite", "tell me about the blue whale"]
            let outcomes = try await withThrowingTaskGroup(of: (String, [DeviceSimulator.Received]).self) { group in
                for question in questions {
                    group.addTask {
                        let deviceID = Self.deviceID()
                        let token = try await stack.authority.mint(user: "owner-\(deviceID)")
                        let (result, _) = try await DeviceSimulator.connect(
                            url: stack.webSocketURL, token: token, deviceID: deviceID
                        ) {
                            device -> [DeviceSimulator.Received] in
                            let session = try await Self.hello(device)
                            device.send(.listen(.start, mode: .auto, sessionId: session))
                            // Both stream audio at once (heard, VAD'd, recognised) and ask a typed question.
                            try await device.stream(Array(speech.prefix(10)))
                            device.send(.listen(.detect, text: question, sessionId: session))
                            var all: [DeviceSimulator.Received] = []
                            while let next = await device.next(within: .seconds(30)) {
                                all.append(next)
                                if next.message?.ttsState == .stop,
                                    all.contains(where: { $0.message?.type == "stt" && $0.message?.text == question })
                                {
                                    break
                                }
                            }
                            return all
                        }
                        return (question, try #require(result))
                    }
                }
                var outcomes: [String: [DeviceSimulator.Received]] = [:]
                for try await (question, received) in group { outcomes[question] = received }
                return outcomes
            }
            for question in questions {
                let received = try #require(outcomes[question])
                let other = questions.first { $0 != question }!
                let texts = received.compactMap(\.message).compactMap(\.text).joined(separator: " ")
                #expect(texts.contains(question.split(separator: " ").last!), "\(question): \(texts)")
                #expect(
                    !texts.contains(other.split(separator: " ").last!), "\(question) heard the other device: \(texts)")
                let stt = received.compactMap(\.message).filter { $0.type == "stt" }.compactMap(\.text)
                #expect(stt.contains(question))
            }
        }
    }

    @Test func abortStopsSpeechAtOnce() async throws {
        try await Self.withVoiceStack { stack in
            let deviceID = Self.deviceID()
            let token = try await stack.authority.mint(user: "aborter")
            let (result, _) = try await DeviceSimulator.connect(
                url: stack.webSocketURL, token: token, deviceID: deviceID, protocolVersion: 3
            ) {
                device -> (Duration, Int, [DeviceSimulator.Received]) in
                let session = try await Self.hello(device)
                device.send(
                    .listen(
                        .detect, text: "please tell me a very long story about the sea and the ships on it",
                        sessionId: session))
                var seen: [DeviceSimulator.Received] = []
                var frames = 0
                while let next = await device.next(within: .seconds(30)) {
                    seen.append(next)
                    if next.audio != nil { frames += 1 }
                    if frames == 8 { break }
                }
                let sentAt = ContinuousClock.now
                device.send(.abort(reason: "wake_word_detected", sessionId: session))
                var stopAt: ContinuousClock.Instant?
                var after = 0
                while let next = await device.next(within: .seconds(3)) {
                    if stopAt == nil, next.message?.ttsState == .stop {
                        stopAt = next.at
                        continue
                    }
                    if stopAt != nil, next.audio != nil { after += 1 }
                }
                return ((stopAt ?? sentAt + .seconds(99)) - sentAt, after, seen)
            }
            let (delay, framesAfterStop, seen) = try #require(result)
            #expect(seen.contains { $0.message?.ttsState == .start })
            #expect(delay < .milliseconds(100), "tts stop came \(delay) after abort")
            #expect(framesAfterStop == 0)
        }
    }

    @Test func badInputGetsAnErrorOrACleanCloseAndOthersGoOn() async throws {
        try await Self.withVoiceStack { stack in
            let token = try await stack.authority.mint(user: "mixed")
            // A healthy device all along.
            async let healthy: [DeviceSimulator.Received]? = DeviceSimulator.connect(
                url: stack.webSocketURL, token: token, deviceID: Self.deviceID()
            ) { device -> [DeviceSimulator.Received] in
                let session = try await Self.hello(device)
                try await Task.sleep(for: .seconds(2))
                device.send(.listen(.detect, text: "are you still there", sessionId: session))
                return await device.collect(idle: .seconds(30)) { $0.message?.ttsState == .stop }
            }.result

            // No token: the upgrade is refused.
            await #expect(throws: (any Error).self) {
                _ = try await DeviceSimulator.connect(url: stack.webSocketURL, token: nil, deviceID: Self.deviceID()) {
                    _ in ()
                }
            }
            // A forged device token, an unknown protocol version.
            await #expect(throws: (any Error).self) {
                _ = try await DeviceSimulator.connect(
                    url: stack.webSocketURL, token: "AAAA.123", deviceID: Self.deviceID()
                ) { _ in () }
            }
            await #expect(throws: (any Error).self) {
                _ = try await DeviceSimulator.connect(
                    url: stack.webSocketURL, token: token, deviceID: Self.deviceID(),
                    headerOverrides: ["Protocol-Version": "7"]
                ) { _ in () }
            }
            // listen before hello: closed with 4501.
            let (_, early) = try await DeviceSimulator.connect(
                url: stack.webSocketURL, token: token, deviceID: Self.deviceID()
            ) { device in
                device.send(.listen(.start, mode: .auto, sessionId: nil))
                _ = await device.collect(idle: .seconds(5)) { _ in false }
            }
            #expect(early == CloseCode.badRequest.rawValue)
            // An oversized binary frame after hello: closed with 4501.
            let (_, oversized) = try await DeviceSimulator.connect(
                url: stack.webSocketURL, token: token, deviceID: Self.deviceID()
            ) { device in
                _ = try await Self.hello(device)
                device.sendBinary([UInt8](repeating: 7, count: 6000))
                _ = await device.collect(idle: .seconds(5)) { _ in false }
            }
            #expect(oversized == CloseCode.badRequest.rawValue)
            // A wrong v2 header: closed with 4501.
            let (_, badHeader) = try await DeviceSimulator.connect(
                url: stack.webSocketURL, token: token, deviceID: Self.deviceID(), protocolVersion: 2
            ) { device in
                _ = try await Self.hello(device)
                device.sendBinary([0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 99, 1, 2])
                _ = await device.collect(idle: .seconds(5)) { _ in false }
            }
            #expect(badHeader == CloseCode.badRequest.rawValue)
            // Corrupt Opus: an alert, then a close once it is clearly not audio.
            let (alerts, corrupt) = try await DeviceSimulator.connect(
                url: stack.webSocketURL, token: token, deviceID: Self.deviceID(), useQuery: true
            ) { device -> [DeviceSimulator.Received] in
                let session = try await Self.hello(device)
                device.send(.listen(.start, mode: .auto, sessionId: session))
                try await device.stream(
                    (0..<40).map { _ in (0..<80).map { _ in UInt8.random(in: 0...255) } }, interval: .milliseconds(20))
                return await device.collect(idle: .seconds(10)) { _ in false }
            }
            #expect(alerts?.contains { $0.message?.type == "alert" } == true)
            #expect(corrupt == CloseCode.badRequest.rawValue)

            let answer = try #require(try await healthy)
            #expect(answer.contains { $0.message?.ttsState == .stop })
            #expect(answer.contains { $0.audio != nil })
        }
    }

    @Test func aSilentDeviceHearsAFarewellAndIsClosed() async throws {
        try await Self.withVoiceStack(
            voiceEnvironment: ["SWITCHBOARD_VOICE_IDLE_SECONDS": "2", "SWITCHBOARD_VOICE_HARD_CLOSE_SECONDS": "6"]
        ) { stack in
            let token = try await stack.authority.mint(user: "quiet")
            let (result, code) = try await DeviceSimulator.connect(
                url: stack.webSocketURL, token: token, deviceID: Self.deviceID()
            ) {
                device -> [DeviceSimulator.Received] in
                let session = try await Self.hello(device)
                device.send(.listen(.start, mode: .auto, sessionId: session))
                return await device.collect(idle: .seconds(15)) { _ in false }
            }
            let received = try #require(result)
            let farewell = received.compactMap(\.message).first { $0.ttsState == .sentenceStart }
            #expect(farewell?.text?.lowercased().contains("goodbye") == true)
            #expect(received.contains { $0.message?.ttsState == .stop })
            #expect(code == CloseCode.idleTimeout.rawValue)
        }
    }

    @Test func openAICompatibleEnginesServeTheSamePipeline() async throws {
        let fake = FakeOpenAI()
        try await fake.withServer { port in
            try await Self.withVoiceStack(voiceEnvironment: [
                "SWITCHBOARD_VOICE_ASR_ENGINE": "openai", "SWITCHBOARD_VOICE_TTS_ENGINE": "openai",
                "SWITCHBOARD_VOICE_OPENAI_BASE_URL": "http://127.0.0.1:\(port)/ok/v1",
                "SWITCHBOARD_VOICE_OPENAI_API_KEY": "sk-voice",
            ]) { stack in
                let speech = try await DeviceSimulator.speech("good morning")
                let token = try await stack.authority.mint(user: "cloud")
                let (result, _) = try await DeviceSimulator.connect(
                    url: stack.webSocketURL, token: token, deviceID: Self.deviceID(), protocolVersion: 2
                ) { device -> [DeviceSimulator.Received] in
                    let session = try await Self.hello(device)
                    return try await Self.sayAndHear(device, session: session, speech)
                }
                let received = try #require(result)
                #expect(received.compactMap(\.message).first { $0.type == "stt" }?.text == FakeOpenAI.transcription)
                try Self.checkSpokenAnswer(received)
                #expect(fake.count("transcriptions") == 1)
                #expect(fake.count("speech") >= 1)
                #expect(fake.authorizations.withLock { $0 }.allSatisfy { $0 == "Bearer sk-voice" })
            }
        }
    }

    /// The device says `speech` in auto mode (the server's VAD ends the turn) and hears until `tts stop`.
    static func sayAndHear(
        _ device: DeviceSimulator, session: String, _ speech: [[UInt8]]
    ) async throws -> [DeviceSimulator.Received] {
        device.send(.listen(.start, mode: .auto, sessionId: session))
        try await device.stream(speech)
        return await device.collect(idle: .seconds(30)) { $0.message?.ttsState == .stop }
    }

    /// The OpenAI-compatible engines refuse (401): each call is retried, then the offline engines
    /// answer (the default fallback), and the device hears its answer as if nothing happened.
    @Test func failingCloudEnginesFallBackToTheOfflineOnes() async throws {
        let fake = FakeOpenAI()
        try await fake.withServer { port in
            try await Self.withVoiceStack(voiceEnvironment: [
                "SWITCHBOARD_VOICE_ASR_ENGINE": "openai", "SWITCHBOARD_VOICE_TTS_ENGINE": "openai",
                "SWITCHBOARD_VOICE_OPENAI_BASE_URL": "http://127.0.0.1:\(port)/unauthorized/v1",
            ]) { stack in
                let speech = try await DeviceSimulator.speech("good morning")
                let token = try await stack.authority.mint(user: "fallback")
                let (result, _) = try await DeviceSimulator.connect(
                    url: stack.webSocketURL, token: token, deviceID: Self.deviceID()
                ) {
                    device -> [DeviceSimulator.Received] in
                    let session = try await Self.hello(device)
                    return try await Self.sayAndHear(device, session: session, speech)
                }
                let received = try #require(result)
                let stt = received.compactMap(\.message).first { $0.type == "stt" }?.text ?? ""
                #expect(stt.lowercased().contains("morning"), "recognised \(stt)")
                try Self.checkSpokenAnswer(received)
                // One retry per call, then the fallback.
                #expect(fake.count("transcriptions") == 2)
                let metrics = try await Self.metrics(stack, service: "voice-worker")
                let fallbacks = metrics.split(separator: "\n").filter {
                    $0.hasPrefix("sb_voice_engine_fallbacks_total")
                }
                #expect(fallbacks.contains { $0.contains("asr") && $0.hasSuffix(" 1") }, "\(fallbacks)")
                #expect(fallbacks.contains { $0.contains("tts") && !$0.hasSuffix(" 0") }, "\(fallbacks)")
                #expect(metrics.contains("sb_voice_input_queue_depth"))
                #expect(metrics.contains("sb_voice_uplink_packets_decoded_total"))
            }
        }
    }

    @Test func manualModeRecognisesWhatCameBeforeListenStop() async throws {
        try await Self.withVoiceStack { stack in
            let speech = try await DeviceSimulator.speech("good morning", silenceAfter: .milliseconds(120))
            let token = try await stack.authority.mint(user: "pusher")
            let (result, _) = try await DeviceSimulator.connect(
                url: stack.webSocketURL, token: token, deviceID: Self.deviceID()
            ) {
                device -> [DeviceSimulator.Received] in
                let session = try await Self.hello(device)
                device.send(.listen(.start, mode: .manual, sessionId: session))
                try await device.stream(speech)
                device.send(.listen(.stop, sessionId: session))
                return await device.collect(idle: .seconds(30)) { $0.message?.ttsState == .stop }
            }
            let received = try #require(result)
            let text = received.compactMap(\.message).first { $0.type == "stt" }?.text ?? ""
            #expect(text.contains("morning"), "recognised \(text)")
            #expect(received.contains { $0.audio != nil })
        }
    }

    /// A turn its conversation refuses (MESSAGE_REJECTED `queue_full`: the device's owner has filled the
    /// conversation's queue from the console) is told at once, not after the 60 s answer timeout.
    @Test func aTurnTheConversationRefusesIsToldAtOnce() async throws {
        try await Self.withVoiceStack(agentEnvironment: ["SWITCHBOARD_AGENT_TOKEN_RATE": "5"]) { stack in
            let token = try await stack.authority.mint(user: "queue-filler")
            let (result, _) = try await DeviceSimulator.connect(
                url: stack.webSocketURL, token: token, deviceID: Self.deviceID()
            ) { device -> (heard: [DeviceSimulator.Received], after: Duration) in
                let session = try await Self.hello(device)
                let redis = RedisClient(
                    configuration: .init(endpoint: TestEnvironment.redisEndpoint), logger: TestEnvironment.logger)
                let route = try await VoiceRouteStore(redis: redis).route(session: session)
                await redis.close()
                let conversation = try #require(route?.conversationId)
                // One message answered slowly and 20 waiting: the conversation takes no more.
                let chatURL = stack.httpBase.replacingOccurrences(of: "http://", with: "ws://") + "/ws"
                let (acknowledged, _) = try await ChatClient.withConnection(url: chatURL, token: token) { client in
                    for index in 0...BusyPolicy.maxQueuedMessages {
                        client.send(RecoveryTests.send(conversation, "question \(index) from the console"))
                    }
                    var acks = 0
                    while acks <= BusyPolicy.maxQueuedMessages,
                        let next = await client.frames.next(within: .seconds(10))
                    {
                        if next.frame.type == "ACK" { acks += 1 }
                    }
                    return acks
                }
                #expect(acknowledged == BusyPolicy.maxQueuedMessages + 1)
                let asked = ContinuousClock.now
                device.send(.listen(.detect, text: "are you there", sessionId: session))
                let heard = await device.collect(idle: .seconds(20)) { $0.message?.ttsState == .stop }
                return (heard, (heard.last?.at ?? asked + .seconds(99)) - asked)
            }
            let (heard, after) = try #require(result)
            let messages = heard.compactMap(\.message)
            let alert = messages.first { $0.type == "alert" }
            #expect(alert?.status == "warning", "\(messages.map(\.type))")
            #expect(alert?.message?.contains("waiting") == true, "\(alert?.message ?? "no alert")")
            #expect(messages.last?.ttsState == .stop)
            #expect(!messages.contains { $0.ttsState == .start } && !heard.contains { $0.audio != nil })
            #expect(after < .seconds(10), "told after \(after)")
        }
    }

    static func metrics(_ stack: Stack, service: String) async throws -> String {
        let port = try #require(stack.processes.logs(of: service).first?.adminPort)
        let (data, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/metrics")!)
        return String(decoding: data, as: UTF8.self)
    }
}
