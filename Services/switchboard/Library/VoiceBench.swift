import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import Histogram
import Logging
import Synchronization
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardVoice

/// Voice benchmark 1: the pipeline's own share of voice-to-voice latency. One simulated device speaks
/// (eSpeak, real-time paced Opus); the time from the end of its speech to the first answer frame, less
/// the VAD's silence window, is what the platform adds when the engines take no time: run voice-worker
/// with the instant engines and the agent-worker's offline engine without delays (bench.sh does).
struct VoiceOverheadBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "voice-overhead",
        abstract: "Voice-to-voice latency minus the VAD's silence window, with instant engines (goal p99 < 50 ms).",
        discussion: """
            Run voice-worker with SWITCHBOARD_VOICE_ASR_ENGINE=instant SWITCHBOARD_VOICE_TTS_ENGINE=instant and the \
            agent-worker with SWITCHBOARD_AGENT_FIRST_TOKEN_DELAY_MS=0 SWITCHBOARD_AGENT_TOKEN_RATE=0, so what remains \
            is the platform: gateway, Kafka, voice-worker, orchestrator, agent-worker, notifier, Redis and back.
            """)

    @Option(help: "The gateway's base URL.") var gateway = "http://127.0.0.1:8080"
    @Option(help: "Turns to measure.") var turns = 30
    @Option(help: "Turns first, not measured.") var warmup = 2
    @Option(help: "voice-worker's end-of-utterance silence (SWITCHBOARD_VOICE_MIN_SILENCE_MS).") var minSilenceMs = 600
    @Option(help: "HS256 secret (env SWITCHBOARD_JWT_SECRET).") var secret: String?

    @OptionGroup var output: BenchOutput

    func report() async throws {
        let secret = try setting(secret, environment: "JWT_SECRET", default: SwitchboardConfiguration.developmentSecret)
        let token = try await TokenAuthority(secret: secret).mint(user: "voice-bench-\(UUID().uuidString.prefix(8))")
        let (packets, speechEnd) = try await DeviceSimulator.utterance(
            "good morning", silenceAfter: .milliseconds(minSilenceMs + 1200))
        let url = gateway.replacingOccurrences(of: "http://", with: "ws://") + "/xiaozhi/v1/"
        let (turns, warmup, window) = (turns, warmup, Duration.milliseconds(minSilenceMs))
        let outcome = try await DeviceSimulator.connect(
            url: url, token: token, deviceID: VoiceDevicesBench.deviceID(), logger: quietLogger
        ) {
            device -> (Histogram<UInt64>, Histogram<UInt64>, Int) in
            var overhead = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            var voiceToVoice = overhead
            var failed = 0
            device.send(.deviceHello())
            guard let hello = await device.waitFor(type: "hello", within: .seconds(10)), let session = hello.sessionId
            else {
                throw ValidationError("no server hello")
            }
            BenchReporter.begin("turns", total: warmup + turns)
            for index in 0..<(warmup + turns) {
                BenchReporter.step()
                device.send(.listen(.start, mode: .auto, sessionId: session))
                let clock = ContinuousClock()
                let start = clock.now
                // Packets and answer interleave: stream in a child task, read here. Packet i leaves at
                // start + i × 60 ms; the speaker stopped when the last packet with speech left.
                async let streamed: Void = device.stream(packets)
                let stoppedSpeaking = start + .milliseconds(60 * speechEnd)
                var firstAudio: ContinuousClock.Instant?
                while let next = await device.next(within: .seconds(30)) {
                    if firstAudio == nil, next.audio != nil { firstAudio = next.at }
                    if next.message?.ttsState == .stop { break }
                }
                try await streamed
                guard let firstAudio else {
                    failed += 1
                    continue
                }
                guard index >= warmup else { continue }
                let total = firstAudio - stoppedSpeaking
                _ = voiceToVoice.record(microseconds(total))
                _ = overhead.record(microseconds(total - window))
            }
            return (overhead, voiceToVoice, failed)
        }
        guard let (overhead, voiceToVoice, failed) = outcome.result else {
            throw ValidationError("the device connection closed (code \(outcome.closeCode.map(String.init) ?? "none"))")
        }
        BenchReporter.say(
            "voice overhead over \(turns) turns (\(failed) without audio), silence window \(minSilenceMs) ms")
        BenchReporter.record(LatencySummary(name: "voice-to-voice", histogram: voiceToVoice))
        BenchReporter.record(LatencySummary(name: "pipeline overhead", histogram: overhead))
    }
}

/// Voice benchmark 2: many devices streaming speech at once through the gateway and voice-worker (VAD
/// on, instant engines): uplink frames dropped, downlink pacing jitter, memory per device.
struct VoiceDevicesBench: BenchScenario {
    static let configuration = CommandConfiguration(
        commandName: "voice-devices",
        abstract:
            "Concurrent devices: frames dropped (goal < 1 %), downlink pacing jitter p99 (goal < 10 ms), RSS per device.",
        discussion: "Run voice-worker with the instant engines (bench.sh does).")

    @Option(help: "The gateway's base URL.") var gateway = "http://127.0.0.1:8080"
    @Option(help: "voice-worker's admin URL (its /metrics).") var voiceWorker = "http://127.0.0.1:9083"
    @Option(help: "Devices talking at once.") var devices = 200
    @Option(help: "The gateway's pid, for its RSS.") var gatewayPid: Int32?
    @Option(help: "voice-worker's pid, for its RSS.") var voiceWorkerPid: Int32?
    @Option(help: "Seconds a device's turn may take.") var timeout = 180
    @Option(help: "HS256 secret (env SWITCHBOARD_JWT_SECRET).") var secret: String?

    final class State: Sendable {
        let connected = Atomic<Int>(0)
        let answered = Atomic<Int>(0)
        let failed = Atomic<Int>(0)
        let sent = Atomic<Int>(0)
        let received = Atomic<Int>(0)
        let underruns = Atomic<Int>(0)
        let refills = Atomic<Int>(0)
        /// |gap − 60 ms| between consecutive frames of a paced run, µs.
        let jitter = Mutex(Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three))
    }

    static func deviceID() -> String {
        (0..<6).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined(separator: ":")
    }

    @OptionGroup var output: BenchOutput

    func report() async throws {
        let secret = try setting(secret, environment: "JWT_SECRET", default: SwitchboardConfiguration.developmentSecret)
        let authority = try await TokenAuthority(secret: secret)
        let packets = try await DeviceSimulator.speech("good morning", silenceAfter: .milliseconds(1500))
        let url = gateway.replacingOccurrences(of: "http://", with: "ws://") + "/xiaozhi/v1/"
        let state = State()
        let droppedBefore = try await Self.counter("sb_voice_frames_dropped_total", at: voiceWorker)
        let rssBefore = try [gatewayPid, voiceWorkerPid].map { try $0.map(ConnectionsBench.residentBytes(pid:)) ?? 0 }
        let peak = PeakResident()
        let (devices, timeout, gatewayPid, voiceWorkerPid) = (devices, timeout, gatewayPid, voiceWorkerPid)
        let started = ContinuousClock.now
        try await withThrowingDiscardingTaskGroup { group in
            BenchReporter.begin("devices connected", total: devices)
            for _ in 0..<devices {
                let token = try await authority.mint(user: "voice-device-\(UUID().uuidString.prefix(8))")
                group.addTask {
                    do {
                        _ = try await DeviceSimulator.connect(
                            url: url, token: token, deviceID: Self.deviceID(), logger: quietLogger
                        ) {
                            device in
                            device.send(.deviceHello())
                            guard let hello = await device.waitFor(type: "hello", within: .seconds(30)),
                                let session = hello.sessionId
                            else {
                                state.failed.add(1, ordering: .relaxed)
                                return
                            }
                            state.connected.add(1, ordering: .relaxed)
                            BenchReporter.step()
                            device.send(.listen(.start, mode: .auto, sessionId: session))
                            async let streamed: Void = device.stream(packets)
                            var frames: [ContinuousClock.Instant] = []
                            var stopped = false
                            while let next = await device.next(within: .seconds(Int64(timeout))) {
                                if next.audio != nil { frames.append(next.at) }
                                if next.message?.ttsState == .stop {
                                    stopped = true
                                    break
                                }
                            }
                            try await streamed
                            state.sent.add(packets.count, ordering: .relaxed)
                            state.received.add(frames.count, ordering: .relaxed)
                            if stopped {
                                state.answered.add(1, ordering: .relaxed)
                            } else {
                                state.failed.add(1, ordering: .relaxed)
                            }
                            let pacing = Pacing(frames)
                            state.underruns.add(pacing.underruns, ordering: .relaxed)
                            state.refills.add(pacing.refills, ordering: .relaxed)
                            state.jitter.withLock { histogram in
                                for deviation in pacing.deviations { _ = histogram.record(microseconds(deviation)) }
                            }
                        }
                    } catch {
                        state.failed.add(1, ordering: .relaxed)
                    }
                }
            }
            // RSS while every device is connected and talking.
            group.addTask {
                while state.answered.load(ordering: .relaxed) + state.failed.load(ordering: .relaxed) < devices {
                    let now = [gatewayPid, voiceWorkerPid].map { pid in
                        pid.flatMap { try? ConnectionsBench.residentBytes(pid: $0) } ?? 0
                    }
                    peak.record(now)
                    try await Task.sleep(for: .milliseconds(500))
                }
            }
        }
        let elapsed = ContinuousClock.now - started
        let dropped = try await Self.counter("sb_voice_frames_dropped_total", at: voiceWorker) - droppedBefore
        let sent = state.sent.load(ordering: .relaxed)
        BenchReporter.say(
            "\(devices) devices: \(state.connected.load(ordering: .relaxed)) said hello, \(state.answered.load(ordering: .relaxed)) answered, \(state.failed.load(ordering: .relaxed)) failed, in \(elapsed)"
        )
        BenchReporter.say(
            String(
                format: "uplink frames: %d sent, %.0f dropped by voice-worker (%.3f %%)", sent, dropped,
                sent > 0 ? 100 * dropped / Double(sent) : 0))
        BenchReporter.say("downlink frames received: \(state.received.load(ordering: .relaxed))")
        BenchReporter.say(
            "answer underruns (frames after the device's queue ran dry; a new burst follows): \(state.underruns.load(ordering: .relaxed))"
        )
        BenchReporter.say(
            "refill frames (sent at once to restore the device's 4-frame cushion after a late sentence; not jitter): \(state.refills.load(ordering: .relaxed))"
        )
        BenchReporter.record(LatencySummary(name: "downlink pacing jitter", histogram: state.jitter.withLock { $0 }))
        BenchReporter.say(
            "gateway: frame lateness against its pacing slot, p99 \(try await Self.histogramQuantile("sb_voice_downlink_jitter_seconds", 0.99, at: gateway))"
        )
        let peaks = peak.values
        for (index, name) in ["gateway", "voice-worker"].enumerated() where [gatewayPid, voiceWorkerPid][index] != nil {
            let perDevice = Double(peaks[index] - rssBefore[index]) / Double(max(1, devices)) / 1024
            BenchReporter.say(
                String(
                    format: "%@ RSS %.1f MiB → peak %.1f MiB: %.1f KiB per device", name as NSString,
                    Double(rssBefore[index]) / 1_048_576, Double(peaks[index]) / 1_048_576, perDevice))
        }
    }

    /// The device's view of the downlink: it plays a frame every 60 ms from its queue. A frame that
    /// finds the queue empty is an underrun (the answer was not ready: a new burst follows, by design).
    /// Within a run, past the burst, the gateway keeps the queue 4 frames ahead: a frame that comes
    /// less than half a frame after the one before refills that cushion after a sentence came late
    /// (by design too, and inaudible), and each other gap should be 60 ms: its deviation is the jitter.
    struct Pacing: Equatable {
        var deviations: [Duration] = []
        var underruns = 0
        var refills = 0

        init(_ arrivals: [ContinuousClock.Instant]) {
            let frame = Duration.milliseconds(60)
            var playEnd: ContinuousClock.Instant?
            var run = 0
            for (index, arrival) in arrivals.enumerated() {
                if let end = playEnd, end > arrival {
                    run += 1
                    // Past the burst of 5 and the first paced frame: steady pacing.
                    if run >= 6 {
                        let gap = arrival - arrivals[index - 1]
                        if gap < frame / 2 {
                            refills += 1
                        } else {
                            deviations.append(gap > frame ? gap - frame : frame - gap)
                        }
                    }
                    playEnd = end + frame
                } else {
                    if playEnd != nil { underruns += 1 }
                    run = 1
                    playEnd = arrival + frame
                }
            }
        }
    }

    /// A quantile of a Prometheus histogram (its bucket bound where the cumulative count reaches it).
    static func histogramQuantile(_ name: String, _ quantile: Double, at base: String) async throws -> String {
        let (data, _) = try await URLSession.shared.data(from: URL(string: base + "/metrics")!)
        var buckets: [(bound: String, count: Double)] = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix(name + "_bucket")
        {
            guard let start = line.range(of: "le=\""), let end = line[start.upperBound...].firstIndex(of: "\""),
                let count = line.split(separator: " ").last.flatMap({ Double($0) })
            else { continue }
            buckets.append((String(line[start.upperBound..<end]), count))
        }
        guard let total = buckets.last?.count, total > 0 else { return "no samples" }
        let bound = buckets.first { $0.count >= quantile * total }?.bound ?? "+Inf"
        return "≤ \(bound) s (n=\(Int(total)))"
    }

    /// The sum of a counter's series on a Prometheus page.
    static func counter(_ name: String, at base: String) async throws -> Double {
        let (data, _) = try await URLSession.shared.data(from: URL(string: base + "/metrics")!)
        return String(decoding: data, as: UTF8.self).split(separator: "\n")
            .filter { $0.hasPrefix(name) }
            .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
            .reduce(0, +)
    }
}

/// The highest RSS seen per process.
final class PeakResident: Sendable {
    private let peaks = Mutex([0, 0])
    func record(_ now: [Int]) { peaks.withLock { $0 = zip($0, now).map { max($0, $1) } } }
    var values: [Int] { peaks.withLock { $0 } }
}
