import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import NIOCore
import NIOWebSocket
import Synchronization
import SwitchboardVoice

/// A xiaozhi device over a real WebSocket, for end-to-end tests and `switchboard bench voice-*`: it sends what the firmware sends
/// (hello, listen, Opus frames) and records what the server answers with arrival times.
public final class DeviceSimulator: Sendable {
    public struct Received: Sendable {
        public enum Content: Sendable {
            case json(Xiaozhi.Message, text: String)
            case audio([UInt8])
        }

        public var content: Content
        public var at: ContinuousClock.Instant

        public var message: Xiaozhi.Message? {
            if case .json(let message, _) = content { return message }
            return nil
        }

        public var audio: [UInt8]? {
            if case .audio(let packet) = content { return packet }
            return nil
        }
    }

    enum Outgoing: Sendable {
        case text(String)
        case binary([UInt8])
    }

    private let outbound: AsyncStream<Outgoing>.Continuation
    private let inbox = Inbox()
    public let framing: Xiaozhi.BinaryProtocol

    init(outbound: AsyncStream<Outgoing>.Continuation, framing: Xiaozhi.BinaryProtocol) {
        self.outbound = outbound
        self.framing = framing
    }

    public func send(_ message: Xiaozhi.Message) { outbound.yield(.text(message.json())) }
    public func sendText(_ text: String) { outbound.yield(.text(text)) }
    public func sendBinary(_ bytes: [UInt8]) { outbound.yield(.binary(bytes)) }
    public func sendAudio(_ packet: [UInt8]) { outbound.yield(.binary(framing.encodeAudio(packet))) }

    /// Sends packets one per 60 ms, as a device's microphone does.
    public func stream(_ packets: [[UInt8]], interval: Duration = .milliseconds(60)) async throws {
        let clock = ContinuousClock()
        var deadline = clock.now
        for packet in packets {
            sendAudio(packet)
            deadline = deadline + interval
            try await clock.sleep(until: deadline)
        }
    }

    /// The next thing the server sent, or nil after `timeout` (or when the connection closed).
    public func next(within timeout: Duration) async -> Received? {
        await inbox.next(within: timeout)
    }

    /// Everything received until `stop` matches (included) or nothing came for `idle`.
    public func collect(idle: Duration, until stop: (Received) -> Bool) async -> [Received] {
        var all: [Received] = []
        while let next = await next(within: idle) {
            all.append(next)
            if stop(next) { break }
        }
        return all
    }

    /// The first JSON message of `type` (and `state`), skipping others; nil after `timeout`.
    public func waitFor(type: String, state: String? = nil, within timeout: Duration) async -> Xiaozhi.Message? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard let next = await next(within: deadline - ContinuousClock.now) else { return nil }
            if let message = next.message, message.type == type, state == nil || message.state == state {
                return message
            }
        }
        return nil
    }

    /// Connects with the protocol's headers (or, with `useQuery`, its query parameters) and runs `body`;
    /// returns its result and the server's close code.
    public static func connect<T: Sendable>(
        url: String, token: String?, deviceID: String, clientID: String = UUID().uuidString, protocolVersion: Int = 1,
        useQuery: Bool = false, headerOverrides: [String: String] = [:],
        logger: Logger = Logger(label: "device-simulator"),
        _ body: @escaping @Sendable (DeviceSimulator) async throws -> T
    ) async throws -> (result: T?, closeCode: UInt16?) {
        var headers = HTTPFields()
        var target = url
        if useQuery {
            var query = ["device-id=\(deviceID)", "client-id=\(clientID)", "protocol-version=\(protocolVersion)"]
            if let token {
                query.append(
                    "authorization=\(token.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? token)")
            }
            target += (url.contains("?") ? "&" : "?") + query.joined(separator: "&")
        } else {
            headers[HTTPField.Name("Device-Id")!] = deviceID
            headers[HTTPField.Name("Client-Id")!] = clientID
            headers[HTTPField.Name("Protocol-Version")!] = String(protocolVersion)
            if let token { headers[.authorization] = "Bearer \(token)" }
        }
        for (name, value) in headerOverrides { headers[HTTPField.Name(name)!] = value }
        let framing = try Xiaozhi.BinaryProtocol(version: protocolVersion)
        let (outgoing, continuation) = AsyncStream.makeStream(of: Outgoing.self)
        let device = DeviceSimulator(outbound: continuation, framing: framing)
        let result = ValueBox<T>()
        let closeFrame = try await WebSocketClient.connect(
            url: target, configuration: .init(maxFrameSize: 1 << 20, additionalHeaders: headers), logger: logger
        ) { inbound, writer, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    defer { device.inbox.finish() }
                    for try await message in inbound.messages(maxSize: 1 << 20) {
                        let now = ContinuousClock.now
                        switch message {
                        case .text(let text):
                            if let parsed = try? Xiaozhi.Message.parse(text) {
                                device.inbox.push(Received(content: .json(parsed, text: text), at: now))
                            }
                        case .binary(let buffer):
                            if case .audio(let packet, _)? = try? framing.decode(Array(buffer.readableBytesView)) {
                                device.inbox.push(Received(content: .audio(packet), at: now))
                            }
                        }
                    }
                }
                group.addTask {
                    for await item in outgoing {
                        switch item {
                        case .text(let text): try await writer.write(.text(text))
                        case .binary(let bytes): try await writer.write(.binary(ByteBuffer(bytes: bytes)))
                        }
                    }
                }
                // The body runs to its end even after the server closed: what came before the close is in
                // the inbox, and waiting for more returns at once.
                defer { continuation.finish() }
                result.set(try await body(device))
                group.cancelAll()
            }
        }
        device.inbox.finish()
        return (result.get(), closeFrame.map { UInt16(webSocketErrorCode: $0.closeCode) })
    }

    /// `text` spoken by eSpeak NG, at 16 kHz, as 60 ms Opus packets, with `silenceAfter` of silence
    /// packets (so the server's VAD sees the end of the utterance).
    public static func speech(
        _ text: String, voice: String = "en-us", wordsPerMinute: Int = 130,
        silenceBefore: Duration = .milliseconds(600),
        silenceAfter: Duration = .milliseconds(1500), format: AudioFormat = .uplink
    ) async throws -> [[UInt8]] {
        try await utterance(
            text, voice: voice, wordsPerMinute: wordsPerMinute, silenceBefore: silenceBefore,
            silenceAfter: silenceAfter,
            format: format
        ).packets
    }

    /// The packets of `speech`, and the index of the last packet with speech: a device sends a packet
    /// once it has recorded it, so that packet's sending is the moment the speaker stopped.
    public static func utterance(
        _ text: String, voice: String = "en-us", wordsPerMinute: Int = 130,
        silenceBefore: Duration = .milliseconds(600),
        silenceAfter: Duration = .milliseconds(1500), format: AudioFormat = .uplink
    ) async throws -> (packets: [[UInt8]], speechEnd: Int) {
        let pcm = try await pcm(text, voice: voice, wordsPerMinute: wordsPerMinute, sampleRate: format.sampleRate)
        func silence(_ duration: Duration) -> [Int16] {
            [Int16](repeating: 0, count: Int(duration / .milliseconds(1)) * format.sampleRate / 1000)
        }
        // A little noise rather than digital silence, like a real microphone; the same noise every
        // time (a fixed LCG), so a test hears exactly the same utterance on every run.
        var state: UInt32 = 0x2545_F491
        let before = silence(silenceBefore)
        let samples = (before + pcm + silence(silenceAfter)).map { sample -> Int16 in
            state = state &* 1_664_525 &+ 1_013_904_223
            return sample &+ Int16(Int(state >> 26) - 32)
        }
        // Where the speaker stopped: after the last frame loud enough to be speech (eSpeak ends its
        // output with some silence of its own).
        let frame = format.samplesPerFrame
        let frames = stride(from: 0, to: samples.count, by: frame).map {
            Array(samples[$0..<min(samples.count, $0 + frame)])
        }
        let lastVoiced = frames.lastIndex { VoiceActivityDetector.rms($0) >= 200 } ?? (before.count / frame)
        return (try OpusEncoder(format: format, bitrate: 32_000).encodeAll(samples), lastVoiced)
    }

    /// `text` spoken by eSpeak NG at `sampleRate`: the PCM a device's microphone would record.
    public static func pcm(_ text: String, voice: String = "en-us", wordsPerMinute: Int = 130, sampleRate: Int = 16_000)
        async throws -> [Int16]
    {
        try await EspeakSynthesizer(voice: voice, wordsPerMinute: wordsPerMinute).synthesize(
            text, sampleRate: sampleRate)
    }
}

/// What the server sent, in order, awaited with a timeout.
final class Inbox: Sendable {
    private struct State {
        var items: [DeviceSimulator.Received] = []
        var finished = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func push(_ item: DeviceSimulator.Received) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.items.append(item)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func finish() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func next(within timeout: Duration) async -> DeviceSimulator.Received? {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (item, finished): (DeviceSimulator.Received?, Bool) = state.withLock { state in
                if !state.items.isEmpty { return (state.items.removeFirst(), false) }
                return (nil, state.finished)
            }
            if let item { return item }
            if finished || ContinuousClock.now >= deadline { return nil }
            // Wake on a push, or poll at the deadline.
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    await withCheckedContinuation { continuation in
                        let ready = self.state.withLock { state -> Bool in
                            if !state.items.isEmpty || state.finished { return true }
                            if let previous = state.waiter { previous.resume() }
                            state.waiter = continuation
                            return false
                        }
                        if ready { continuation.resume() }
                    }
                }
                group.addTask { try? await Task.sleep(until: deadline, clock: .continuous) }
                await group.next()
                // Release a waiter the sleep beat, so the other child ends.
                let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                    defer { state.waiter = nil }
                    return state.waiter
                }
                waiter?.resume()
                group.cancelAll()
            }
        }
    }
}

/// A value set by one task and read by another.
final class ValueBox<T: Sendable>: Sendable {
    private let value = Mutex<T?>(nil)
    func set(_ newValue: T) { value.withLock { $0 = newValue } }
    func get() -> T? { value.withLock { $0 } }
}
