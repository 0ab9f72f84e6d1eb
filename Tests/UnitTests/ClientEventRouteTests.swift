import Foundation
import SwitchboardContracts
import Testing

/// The notifier's envelope reader must route exactly as `JSONDecoder` did and make the frame bytes
/// `FrameEncoding` made: the gateway stamps and forwards those bytes unchanged.
@Suite struct ClientEventRouteTests {
    static let source = EventSource(service: "agent-worker", instance: "agent-worker-1")

    static let events: [ClientEvent] = [
        ClientEvent(
            channel: .conversation("conv-1"), frameType: FrameType.messageStreamChunk,
            data: ["messageId": "m1", "chunk": "héllo \"world\"\n\t\\ 世界 👋🏽 </b> \u{01}", "index": 3, "ratio": 0.25]),
        ClientEvent(
            channel: .user("alice"), frameType: FrameType.userNotification,
            data: [
                "nested": ["list": [1, -2.5, true, false, .null, ["a": "b"]], "empty": [:]], "big": 1_234_567_890_123,
            ]),
        ClientEvent(channel: .system, frameType: FrameType.systemStatus, data: .array([]), ephemeral: true),
        ClientEvent(channel: .workflow("run-1"), frameType: "TYPING_START", data: "text value", ephemeral: true),
        ClientEvent(channel: .roles("c:with/slash"), frameType: "ROLE_STATUS_CHANGE", data: .null),
    ]

    /// What the notifier did before: decode the whole envelope, then encode a `ServerFrame`.
    static func decodedFrame(_ bytes: [UInt8]) throws -> (Envelope<ClientEvent>, String) {
        let envelope = try EnvelopeCodec.decode(ClientEvent.self, from: bytes)
        let frame = ServerFrame(
            id: envelope.id.uuidString.lowercased(), type: envelope.payload.frameType, timestamp: envelope.time / 1000,
            data: envelope.payload.data, channel: envelope.payload.channel.description)
        return (envelope, try FrameEncoding.json(frame))
    }

    @Test(arguments: events) func readsTheRoutingFieldsAndMakesTheSameFrame(event: ClientEvent) throws {
        let bytes = try EnvelopeCodec.encode(
            Envelope(routingKey: event.channel.description, source: Self.source, payload: event))
        let (envelope, frame) = try Self.decodedFrame(bytes)
        let route = try ClientEventRoute(envelope: bytes)
        #expect(route.id == envelope.id)
        #expect(route.time == envelope.time)
        #expect(route.channel == event.channel)
        #expect(route.frameType == event.frameType)
        #expect(route.ephemeral == event.ephemeral)
        #expect(String(decoding: route.frameJSON(), as: UTF8.self) == frame)
        // The frame is valid JSON carrying the same data.
        let decoded = try JSONDecoder().decode(ServerFrame.self, from: Data(route.frameJSON()))
        #expect(decoded.data == event.data)
    }

    @Test func toleratesWhitespaceEscapedKeysAndUnknownFields() throws {
        let id = UUID()
        let json = """
            { "extra" : {"x":[1,{"y":"\\"}"}]}, "id":"\(id.uuidString)", "type":"client.event", "schemaVersion":1,
              "time": 1700000000123456, "routingKey":"k", "traceparent":"t", "source":{"service":"s","instance":"i"},
              "payload": {"ephemeral": false, "data" : {"a": [1, 2]} , "fr\\u0061meType":"T\\u00e9", "channel":"user:b\\/c"} }
            """
        let route = try ClientEventRoute(envelope: Array(json.utf8))
        #expect(route.id == id)
        #expect(route.time == 1_700_000_000_123_456)
        #expect(route.channel == .user("b/c"))
        #expect(route.frameType == "Té")
        #expect(String(decoding: route.data, as: UTF8.self) == #"{"a": [1, 2]}"#)
        #expect(
            String(decoding: route.frameJSON(), as: UTF8.self)
                == #"{"channel":"user:b/c","data":{"a": [1, 2]},"id":"\#(id.uuidString.lowercased())","status":"success","timestamp":1700000000123,"type":"Té"}"#
        )
    }

    @Test func refusesWhatTheDecoderRefused() throws {
        let event = ClientEvent(channel: .user("a"), frameType: "T", data: [:])
        let good = String(
            decoding: try EnvelopeCodec.encode(Envelope(routingKey: "a", source: Self.source, payload: event)),
            as: UTF8.self)
        let cases: [(String, ContractError.Code)] = [
            (
                good.replacingOccurrences(of: #""type":"client.event""#, with: #""type":"chat.message.submitted""#),
                .unexpectedType
            ),
            (
                good.replacingOccurrences(of: #""schemaVersion":1"#, with: #""schemaVersion":2"#),
                .unsupportedSchemaVersion
            ),
            (good.replacingOccurrences(of: #""channel":"user:a""#, with: #""channel":"nowhere""#), .malformedEnvelope),
            (good.replacingOccurrences(of: #""ephemeral":false,"#, with: ""), .malformedEnvelope),
            (String(good.dropLast()), .malformedEnvelope),
            (good + "x", .malformedEnvelope),
            ("[]", .malformedEnvelope),
            ("", .malformedEnvelope),
        ]
        for (json, code) in cases {
            #expect(throws: ContractError.self) { try ClientEventRoute(envelope: Array(json.utf8)) }
            do {
                _ = try ClientEventRoute(envelope: Array(json.utf8))
            } catch let error as ContractError {
                #expect(error.code == code, "\(json)")
            }
        }
    }
}
