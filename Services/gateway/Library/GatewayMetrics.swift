import Metrics
import SwitchboardContracts

/// The gateway's metric handles, each label written once and each handle made once (docs/configuration.md
/// lists them).
enum GatewayMetrics {
    // MARK: Connections and admission

    static let connections = Meter(label: "sb_gateway_connections")
    static let admissionsRefused = Counter(label: "sb_gateway_admissions_refused_total")
    static let rateLimited = Counter(label: "sb_gateway_rate_limited_total")
    static let handshakeTimeouts = Counter(label: "sb_gateway_handshake_timeouts_total")
    static let bodyTimeouts = Counter(label: "sb_gateway_body_timeouts_total")
    static let tokenExpiryCloses = Counter(label: "sb_gateway_token_expiry_closes_total")

    /// One handle per command type (unknown types are counted as "other", `CommandHandler.metricType`).
    static let commands = Dictionary(
        uniqueKeysWithValues: (CommandHandler.knownTypes + ["other"]).map {
            ($0, Counter(label: "sb_gateway_commands_total", dimensions: [("type", $0)]))
        })

    // MARK: Voice devices

    static let voiceDevices = Gauge(label: "sb_voice_devices")
    static let voiceUplinkFrames = Counter(label: "sb_voice_uplink_frames_total")
    /// Frames a device sent that were refused (bad framing, over its rate).
    static let voiceDeviceErrors = Counter(label: "sb_voice_device_errors_total")
    static let voiceDownlinkFrames = Counter(label: "sb_voice_downlink_frames_total")
    /// How late each downlink audio frame was written against its 60 ms pace.
    static let voiceDownlinkJitter = Timer(label: "sb_voice_downlink_jitter_seconds")
    /// A device too far behind: its queue was dropped and it was told to reconnect.
    static let voiceDownlinkOverflows = Counter(label: "sb_voice_downlink_overflows_total")
    /// Downlink items for a session no longer connected here.
    static let voiceDownlinkUnroutable = Counter(label: "sb_voice_downlink_unroutable_total")
    static let voiceToolCallsUnroutable = Counter(label: "sb_voice_tool_calls_unroutable_total")

    // MARK: Delivery

    static let delivered = Counter(label: "sb_gateway_events_delivered_total")
    static let droppedEphemeral = Counter(
        label: "sb_gateway_events_dropped_total", dimensions: [("reason", "slow_ephemeral")])
    /// Reconnects that asked to resume: whether the missed events could be sent.
    static let recovered = recoveries(true)
    static let notRecovered = recoveries(false)
    static let gaps = Counter(label: "sb_gateway_insufficient_state_total")
    /// Missed live events read again from a channel's stream (a gap, or PUB/SUB reconnected).
    static let repairs = Counter(label: "sb_gateway_feed_repairs_total")
    static let slowDisconnects = Counter(label: "sb_gateway_slow_disconnects_total")
    static let subscriptions = Meter(label: "sb_gateway_subscriptions")
    /// Event creation (its envelope's time) → the frame written to the client's socket.
    static let deliveryLatency = Timer(label: "sb_gateway_event_delivery_seconds")

    static let hubDecodes = Counter(label: "sb_gateway_hub_decodes_total")
    static let hubCompressions = Counter(label: "sb_gateway_hub_compressions_total")
    static let hubLoopBatches = Counter(label: "sb_gateway_hub_loop_batches_total")

    static func recordWritten(createdAt: Int64) {
        guard createdAt > 0 else { return }
        deliveryLatency.recordMicroseconds(max(0, Clock.epochMicroseconds() - createdAt))
    }

    private static func recoveries(_ recovered: Bool) -> Counter {
        Counter(label: "sb_gateway_recoveries_total", dimensions: [("recovered", "\(recovered)")])
    }
}
