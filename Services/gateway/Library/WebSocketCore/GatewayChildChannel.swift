import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// The gateway's connections: HTTP/1.1 goes to the Hummingbird router (REST, SSE, the console);
/// a WebSocket upgrade is taken before the router, admitted by its door, and then lives on as a
/// `WebSocketConnectionHandler` in the channel's pipeline, with no Swift task of its own.
struct GatewayChildChannel: ServerChildChannel, HTTPChannelHandler {
    enum Outcome: Sendable {
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// An upgrade its door refused (or a malformed one): answered with this status, then closed.
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, Refusal)
        /// Upgraded: the connection runs on its event loop from here on.
        case webSocket
    }

    struct Refusal: Sendable {
        var status: HTTPResponse.Status
        var message: String
        var headers: HTTPFields = [:]
    }

    struct Value: ServerChildChannelValue {
        let outcome: EventLoopFuture<Outcome>
        let channel: any Channel
    }

    private struct Admitted {
        var session: any WebSocketDoorSession
        var deflate: DeflateParameters?
    }

    let responder: HTTPChannelHandler.Responder
    let doors: WebSocketDoors
    let settings: WebSocketConnectionSettings
    /// SO_SNDBUF of upgraded sockets; 0 leaves the kernel's autotuning on.
    let socketSendBufferBytes: Int
    /// Plain HTTP connections: closed when idle this long, or when a body is not in by this deadline.
    let httpIdleTimeout: Duration
    let httpBodyTimeout: TimeAmount
    /// Behind the gateway's own TLS: requests are `https`.
    let secure: Bool

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let admitted = NIOLoopBoundBox<Admitted?>(nil, eventLoop: channel.eventLoop)
            let refusal = NIOLoopBoundBox<Refusal?>(nil, eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<Outcome>(
                maxFrameSize: settings.maxMessageBytes,
                shouldUpgrade: { channel, head in
                    admit(head, channel: channel, admitted: admitted, refusal: refusal)
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard let admission = admitted.value else { throw ChannelError.inappropriateOperationForState }
                        admitted.value = nil
                        try startConnection(on: channel, admission)
                        return .webSocket
                    }
                })
            let configuration = NIOTypedHTTPServerUpgradeConfiguration<Outcome>(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: secure))
                        try channel.pipeline.syncOperations.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: httpIdleTimeout, logger: logger))
                        try channel.pipeline.syncOperations.addHandler(
                            RequestBodyDeadlineHandler(deadline: httpBodyTimeout))
                        let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true))
                        if let refused = refusal.value { return .refused(http, refused) }
                        return .http(http)
                    }
                })
            var pipeline = NIOUpgradableHTTPServerPipelineConfiguration(upgradeConfiguration: configuration)
            pipeline.enablePipelining = false  // Hummingbird's NIOAsyncChannel serialises requests
            pipeline.enableErrorHandling = false
            pipeline.enableResponseHeaderValidation = false
            let outcome = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
                configuration: pipeline)
            return Value(outcome: outcome, channel: channel)
        }
    }

    /// Asks the request's door; remembers its session (or why it refused) for what follows on this loop.
    private func admit(
        _ head: HTTPRequestHead, channel: any Channel, admitted: NIOLoopBoundBox<Admitted?>,
        refusal: NIOLoopBoundBox<Refusal?>
    ) -> EventLoopFuture<HTTPHeaders?> {
        let probe = UpgradeRequest(head: head)
        guard let (door, parameters) = doors.match(probe.path) else {
            refusal.value = Refusal(status: .notFound, message: "no WebSocket endpoint at \(probe.path)")
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        var request = probe
        request.parameters = parameters
        request.remoteAddress = channel.remoteAddress?.ipAddress
        let finalRequest = request
        return channel.eventLoop.makeFutureWithTask {
            try await door.admit(finalRequest)
        }.map { session -> HTTPHeaders? in
            let negotiated = DeflateParameters.negotiate(offers: head.headers["sec-websocket-extensions"])
            admitted.value = Admitted(session: session, deflate: negotiated?.parameters)
            var headers = HTTPHeaders()
            if let response = negotiated?.response { headers.add(name: "Sec-WebSocket-Extensions", value: response) }
            return headers
        }.flatMapErrorThrowing { error -> HTTPHeaders? in
            if let error = error as? HTTPError {
                refusal.value = Refusal(status: error.status, message: error.body ?? "", headers: error.headers)
            } else {
                refusal.value = Refusal(
                    status: .internalServerError, message: "the connection could not be admitted; retry")
            }
            return nil
        }
    }

    private func startConnection(on channel: any Channel, _ admission: Admitted) throws {
        let options = channel.pipeline.syncOperations
        let handler = WebSocketConnectionHandler(settings: settings, deflate: admission.deflate)
        let outbound = WebSocketOutbound(handler: handler, channel: channel)
        handler.outbound = outbound
        let inbox = SerialInbox(highWater: settings.inboxHighWater) { [weak outbound] in outbound?.resumeReading() }
        handler.inbox = inbox
        try options.addHandler(handler)
        if let socketOptions = channel.syncOptions {
            if socketSendBufferBytes > 0 {
                try socketOptions.setOption(.socketOption(.so_sndbuf), value: SocketOptionValue(socketSendBufferBytes))
            }
            // NIO's own buffer stays small; what waits beyond it waits in the connection's bounded buffer.
            try socketOptions.setOption(.writeBufferWaterMark, value: .init(low: 16 * 1024, high: 64 * 1024))
            try socketOptions.setOption(
                .recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 64 * 1024))
        }
        inbox.start(session: admission.session, socket: outbound)
        if let expiresAt = admission.session.expiresAt {
            outbound.closeOnExpiry(expiresAt, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.outcome.get() {
            case .http(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .refused(let http, let refusal):
                try await http.executeThenClose { _, outbound in
                    var headers = refusal.headers
                    headers[.connection] = "close"
                    headers[.contentType] = "application/json"
                    // Hummingbird's own error shape, so clients see one form whichever layer refused.
                    let body = String(
                        decoding: try JSONEncoder().encode(["error": ["message": refusal.message]]), as: UTF8.self)
                    headers[.contentLength] = String(body.utf8.count)
                    try await outbound.write(
                        contentsOf: [
                            .head(HTTPResponse(status: refusal.status, headerFields: headers)),
                            .body(ByteBuffer(string: body)), .end(nil),
                        ])
                }
            case .webSocket:
                return
            }
        } catch {
            logger.debug("connection ended before its first request was served", metadata: ["error": "\(error)"])
        }
    }
}
