import DequeModule
import Foundation
import HummingbirdWebSocket
import Logging
import Metrics
import NIOCore
import NIOWebSocket
import ServiceLifecycle
import Synchronization
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardVoice

/// One device socket's outgoing side: a queue of JSON, audio and control items written on the socket's
/// event loop, audio at the pacer's slots (`DownlinkPacer`, a task scheduled on the loop: no task
/// sleeps per device), cleared at once on barge-in.
final class DeviceConnection: Sendable {
    enum Outgoing: Sendable, Equatable {
        case text(String, turn: Int64?)
        case audio([UInt8], turn: Int64)
        /// `tts stop` once the device has played everything sent before it.
        case ttsStop(turn: Int64)
        case close(code: UInt16, reason: String)

        var turn: Int64? {
            switch self {
            case .text(_, let turn): turn
            case .audio(_, let turn), .ttsStop(let turn): turn
            case .close: nil
            }
        }
    }

    /// The writing side once the socket is attached; owned by the socket's event loop.
    private struct Writer {
        let outbound: WebSocketOutbound
        var pacer: DownlinkPacer
        /// The abort generation the pacer's state belongs to.
        var generation: Int
        /// A write waiting for its slot, and the slot.
        var timer: Scheduled<Void>?
        var slot: ContinuousClock.Instant?
        let ended: CheckedContinuation<Void, Never>
    }

    private struct State {
        var queue = Deque<Outgoing>()
        var writer: Writer?
        var finished = false
        var saidHello = false
        /// Downlink items of turns up to this were aborted by the device.
        var abortedThrough: Int64 = 0
        var latestTurn: Int64 = 0
        /// Bumped on every abort so a write waiting for its slot is dropped.
        var abortGeneration = 0
        var uplinkRate = PacketRate(
            rate: GatewayLimits.deviceUplinkPacketsPerSecond, burst: GatewayLimits.deviceUplinkBurst)
        /// The device's MCP tools (docs/voice.md#device-tools).
        var mcp = DeviceMCPClient()
    }

    /// What the MCP client asks of Redis, done by the connection's task (`XiaozhiDevices.serve`).
    enum MCPEffect: Sendable, Equatable {
        /// The device's tools, for the voice turns of this session (the routing-table entry).
        case store([DeviceTool])
        /// A call's outcome, for the agent-worker waiting on `replyTo`.
        case reply(DeviceToolResult, to: String)
    }

    let sessionID: String
    let identity: DeviceIdentity
    let framing: Xiaozhi.BinaryProtocol
    let burstFrames: Int
    private let now: @Sendable () -> ContinuousClock.Instant
    private let state = Mutex(State())
    let mcpEffects: AsyncStream<MCPEffect>
    private let mcpEffectsContinuation: AsyncStream<MCPEffect>.Continuation

    init(
        sessionID: String, identity: DeviceIdentity, framing: Xiaozhi.BinaryProtocol, burstFrames: Int,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }
    ) {
        self.now = now
        self.sessionID = sessionID
        self.identity = identity
        self.framing = framing
        self.burstFrames = burstFrames
        // Bounded by the MCP client's own limits (one store, a few pending calls); a margin on top.
        (mcpEffects, mcpEffectsContinuation) = AsyncStream.makeStream(bufferingPolicy: .bufferingOldest(256))
    }

    /// Drives the device's MCP client: its messages go to the device in order with the rest; its
    /// outcomes are returned, for a caller that can wait for Redis.
    func mcp(_ step: (inout DeviceMCPClient) -> [DeviceMCPClient.Action]) -> [MCPEffect] {
        let actions = state.withLock { step(&$0.mcp) }
        var effects: [MCPEffect] = []
        for action in actions {
            switch action {
            case .send(let message):
                enqueue(.text(Xiaozhi.Message.mcp(message, sessionId: sessionID).json(), turn: nil))
            case .toolsListed(let tools):
                effects.append(.store(tools))
            case .finished(let result, let replyTo):
                effects.append(.reply(result, to: replyTo))
            }
        }
        return effects
    }

    /// The same from a caller that cannot wait: the outcomes go to `mcpEffects`, which the
    /// connection's task applies.
    func mcpInBackground(_ step: (inout DeviceMCPClient) -> [DeviceMCPClient.Action]) {
        for effect in mcp(step) { mcpEffectsContinuation.yield(effect) }
    }

    /// No more MCP effects: the calls still waiting are answered with an error first.
    func finishMCP() {
        mcpInBackground { $0.close() }
        mcpEffectsContinuation.finish()
    }

    var mcpPhase: DeviceMCPClient.Phase { state.withLock { $0.mcp.phase } }

    var hasSaidHello: Bool { state.withLock { $0.saidHello } }
    /// The uplink limit scales with the device's frames: 20 ms frames are three times the packets of 60 ms.
    func markHello(uplinkFrameDuration: Int = 60) {
        let scale = 60 / Double(max(uplinkFrameDuration, 1))
        state.withLock {
            $0.saidHello = true
            $0.uplinkRate = PacketRate(
                rate: GatewayLimits.deviceUplinkPacketsPerSecond * max(scale, 1),
                burst: GatewayLimits.deviceUplinkBurst * max(scale, 1))
        }
    }

    func enqueue(_ item: Outgoing) {
        let loop: (any EventLoop)? = state.withLock { state in
            guard !state.finished else { return nil }
            // Turn 0 is outside any turn (alerts, closes): never dropped.
            if let turn = item.turn, turn > 0 {
                if turn <= state.abortedThrough { return nil }
                state.latestTurn = max(state.latestTurn, turn)
            }
            if state.queue.count >= GatewayLimits.deviceOutboundItems, !isClose(item) {
                // Too far behind to catch up: what is queued goes, the device hears why and reconnects.
                GatewayMetrics.voiceDownlinkOverflows.increment()
                state.queue.removeAll()
                state.queue.append(
                    .close(
                        code: CloseCode.slowConsumer.rawValue,
                        reason: "more than \(GatewayLimits.deviceOutboundItems) frames waiting for the device"))
                state.finished = true
            } else {
                state.queue.append(item)
            }
            return state.writer?.outbound.eventLoop
        }
        loop?.execute { self.write() }
    }

    private func isClose(_ item: Outgoing) -> Bool {
        if case .close = item { true } else { false }
    }

    /// One audio packet from the device; false when it sends faster than `GatewayLimits` allows.
    func allowUplinkPacket(at now: ContinuousClock.Instant = .now) -> Bool {
        state.withLock { $0.uplinkRate.allow(at: now) }
    }

    /// The uplink limit for this device's frames (`markHello`).
    var uplinkPacketsPerSecond: Double { state.withLock { $0.uplinkRate.rate } }

    /// Items waiting to be written (tests and metrics).
    var queuedItems: Int { state.withLock { $0.queue.count } }

    /// Drops everything queued for the device, ignores the rest of the turns seen so far, and sends
    /// `tts stop` first thing.
    func abort() {
        let loop: (any EventLoop)? = state.withLock { state in
            state.abortedThrough = state.latestTurn
            state.abortGeneration += 1
            state.queue.removeAll { if case .close = $0 { false } else { true } }
            state.queue.prepend(.text(Xiaozhi.Message.tts(.stop, sessionId: sessionID).json(), turn: nil))
            return state.writer?.outbound.eventLoop
        }
        loop?.execute { self.write() }
    }

    /// No more items; queued audio is dropped (nobody will hear it), text and a close still go out.
    func finish() {
        let loop: (any EventLoop)? = state.withLock { state in
            state.finished = true
            state.queue.removeAll {
                switch $0 {
                case .audio, .ttsStop: true
                case .text, .close: false
                }
            }
            return state.writer?.outbound.eventLoop
        }
        loop?.execute { self.write() }
    }

    /// Writes to `outbound` until a close is written, the socket fails, or `finish` and the queue ran dry.
    func writeFrames(to outbound: WebSocketOutbound, logger: Logger) async {
        await withCheckedContinuation { (ended: CheckedContinuation<Void, Never>) in
            state.withLock { state in
                let pacer = DownlinkPacer(frameDuration: .milliseconds(60), burstFrames: burstFrames)
                state.writer = Writer(outbound: outbound, pacer: pacer, generation: state.abortGeneration, ended: ended)
            }
            outbound.eventLoop.execute { self.write() }
        }
    }

    /// What the writer does next, decided under the lock and done outside it.
    private enum Step {
        case message(WebSocketMessage, late: Duration?, on: WebSocketOutbound)
        /// The writer is detached already: the close goes out and the writing ends.
        case close(code: UInt16, reason: String, writer: Writer)
        /// Nothing to do until an item comes or the timer fires.
        case wait
        case end(CheckedContinuation<Void, Never>)
    }

    /// Runs on the socket's loop: writes every item that is due; an audio frame or `tts stop` that is
    /// not yet due schedules this again for its slot.
    private func write() {
        while true {
            let step = state.withLock { state in nextStep(&state) }
            switch step {
            case .wait: return
            case .end(let ended): return ended.resume()
            case .close(let code, let reason, let writer):
                writer.outbound.close(.unknown(code), reason: reason)
                writer.ended.resume()
                return
            case .message(let message, let late, let outbound):
                do {
                    try outbound.write(message)
                } catch {
                    // The socket is gone: nothing more can be written.
                    let writer = state.withLock { state -> Writer? in
                        defer { state.writer = nil }
                        return state.writer
                    }
                    writer?.timer?.cancel()
                    writer?.ended.resume()
                    return
                }
                if let late {
                    GatewayMetrics.voiceDownlinkFrames.increment()
                    // How late the frame left against its slot: the pacing jitter the device hears.
                    GatewayMetrics.voiceDownlinkJitter.recordNanoseconds(max(0, TimeAmount(late).nanoseconds))
                }
            }
        }
    }

    private func nextStep(_ state: inout State) -> Step {
        guard var writer = state.writer else { return .wait }
        if writer.generation != state.abortGeneration {
            // Barge-in: the device drops its queue on `tts stop`, so the pacing starts afresh.
            writer.generation = state.abortGeneration
            writer.pacer.reset()
            writer.timer?.cancel()
            writer.timer = nil
            writer.slot = nil
        }
        let step = writer.timer == nil ? nextStep(&state, writer: &writer) : .wait
        if case .close = step {
            state.writer = nil
            return step
        }
        state.writer = writer
        if case .wait = step, state.queue.isEmpty, state.finished {
            writer.timer?.cancel()
            state.writer = nil
            return .end(writer.ended)
        }
        return step
    }

    private func nextStep(_ state: inout State, writer: inout Writer) -> Step {
        while let item = state.queue.first {
            if let turn = item.turn, turn > 0, turn <= state.abortedThrough {
                state.queue.removeFirst()
                continue
            }
            let now = now()
            switch item {
            case .text(let text, _):
                state.queue.removeFirst()
                return .message(.text(text), late: nil, on: writer.outbound)
            case .close(let code, let reason):
                state.finished = true
                state.queue.removeAll()
                return .close(code: code, reason: reason, writer: writer)
            case .audio(let packet, _):
                let planned = writer.slot ?? writer.pacer.sendTime(now: now)
                guard planned <= now else { return waitFor(planned, now: now, writer: &writer) }
                state.queue.removeFirst()
                writer.slot = nil
                writer.pacer.sent(at: now)
                return .message(
                    .binary(ByteBuffer(bytes: framing.encodeAudio(packet))), late: now - planned, on: writer.outbound)
            case .ttsStop:
                let drained = writer.pacer.drainedTime(now: now)
                guard drained <= now else { return waitFor(drained, now: now, writer: &writer) }
                state.queue.removeFirst()
                writer.pacer.reset()
                return .message(
                    .text(Xiaozhi.Message.tts(.stop, sessionId: sessionID).json()), late: nil, on: writer.outbound)
            }
        }
        return .wait
    }

    /// Schedules the writer on its loop for `slot`.
    private func waitFor(_ slot: ContinuousClock.Instant, now: ContinuousClock.Instant, writer: inout Writer) -> Step {
        writer.slot = slot
        writer.timer = writer.outbound.eventLoop.scheduleTask(in: TimeAmount(slot - now)) {
            self.state.withLock { $0.writer?.timer = nil }
            self.write()
        }
        return .wait
    }
}

/// The device connections of this gateway, and the one Redis subscription through which voice-workers
/// reach them (`Keyspace.PubSub.voiceDownlink(gateway:)`).
final class DeviceConnections: Service, Sendable {
    private struct State {
        var connections: [String: DeviceConnection] = [:]
        var subscribed = false
    }

    private let state = Mutex(State())

    init() {}

    /// At shutdown every device is told to reconnect (to another instance) while the socket still works.
    func run() async throws {
        try? await gracefulShutdown()
        for connection in state.withLock({ Array($0.connections.values) }) {
            connection.enqueue(.close(code: CloseCode.shutdown.rawValue, reason: "server shutting down; reconnect"))
        }
    }

    /// Subscribes to this gateway's downlink channel once; later calls return at once.
    func start(hub: DeliveryHub, gateway: String) async throws {
        let claimed = state.withLock { state -> Bool in
            defer { state.subscribed = true }
            return !state.subscribed
        }
        guard claimed else { return }
        do {
            // This release's names and the release before's (workers not yet upgraded still use those).
            for channel in [
                Keyspace.PubSub.voiceDownlink(gateway: gateway),
                Keyspace.PubSub.PreviousRelease.voiceDownlink(gateway: gateway),
            ] {
                _ = try await hub.source.follow(channel) { [weak self] bytes in self?.deliver(bytes) }
            }
            for channel in [
                Keyspace.PubSub.deviceToolCalls(gateway: gateway),
                Keyspace.PubSub.PreviousRelease.deviceToolCalls(gateway: gateway),
            ] {
                _ = try await hub.source.follow(channel) { [weak self] bytes in self?.deliverToolCall(bytes) }
            }
        } catch {
            state.withLock { $0.subscribed = false }
            throw error
        }
    }

    func add(_ connection: DeviceConnection) {
        let count = state.withLock { state in
            state.connections[connection.sessionID] = connection
            return state.connections.count
        }
        GatewayMetrics.voiceDevices.record(count)
    }

    func remove(_ connection: DeviceConnection) {
        let count = state.withLock { state in
            if state.connections[connection.sessionID] === connection { state.connections[connection.sessionID] = nil }
            return state.connections.count
        }
        GatewayMetrics.voiceDevices.record(count)
    }

    /// An agent's call of a device tool: to the device's MCP client. A call for a device no longer here
    /// is counted and left to the caller's timeout.
    func deliverToolCall(_ bytes: [UInt8]) {
        guard let call = try? JSONDecoder().decode(DeviceToolCall.self, from: Data(bytes)),
            let connection = state.withLock({ $0.connections[call.sessionId] })
        else {
            GatewayMetrics.voiceToolCallsUnroutable.increment()
            return
        }
        connection.mcpInBackground { $0.call(call) }
    }

    func deliver(_ bytes: [UInt8]) {
        guard let item = VoiceDownlink.decode(bytes),
            let connection = state.withLock({ $0.connections[item.sessionId] })
        else {
            GatewayMetrics.voiceDownlinkUnroutable.increment()
            return
        }
        switch item.kind {
        case .audio: connection.enqueue(.audio(item.payload, turn: item.turn))
        case .json: connection.enqueue(.text(String(decoding: item.payload, as: UTF8.self), turn: item.turn))
        case .ttsStop: connection.enqueue(.ttsStop(turn: item.turn))
        case .close:
            let text = String(decoding: item.payload, as: UTF8.self)
            let parts = text.split(separator: " ", maxSplits: 1)
            let code = parts.first.flatMap { UInt16($0) } ?? CloseCode.serverError.rawValue
            connection.enqueue(.close(code: code, reason: parts.count > 1 ? String(parts[1]) : ""))
        }
    }
}
