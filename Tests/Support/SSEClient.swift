import CompressNIO
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A minimal Server-Sent Events reader for tests: it sends one request (a GET, or a POST with a JSON
/// body for the compatible front doors) and parses the stream as it arrives (`id`, `event`, `data`,
/// comments), gzip-compressed or not.
public final class SSEClient: Sendable {
    public struct Event: Sendable, Equatable {
        public var id: String?
        public var event: String?
        public var data: String
    }

    private let channel: any Channel
    private let state: Locked<(head: String?, buffer: String, events: [Event], comments: Int, closed: Bool)>

    private init(
        channel: any Channel,
        state: Locked<(head: String?, buffer: String, events: [Event], comments: Int, closed: Bool)>
    ) {
        self.channel = channel
        self.state = state
    }

    public static func connect(
        host: String = "127.0.0.1", port: Int, path: String, headers: [String: String] = [:], method: String = "GET",
        body: String? = nil
    ) async throws -> SSEClient {
        let state = Locked<(head: String?, buffer: String, events: [Event], comments: Int, closed: Bool)>(
            (nil, "", [], 0, false))
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(Collector(state: state))
                }
            }
            .connect(host: host, port: port).get()
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path)
        head.headers.add(name: "Host", value: "\(host):\(port)")
        head.headers.add(name: "Accept", value: "text/event-stream")
        if let body {
            head.headers.add(name: "Content-Type", value: "application/json")
            head.headers.add(name: "Content-Length", value: String(body.utf8.count))
        }
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: body))), promise: nil) }
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        return SSEClient(channel: channel, state: state)
    }

    /// The response's status line and headers, once received.
    public var head: String? { state.withLock { $0.head } }
    public var events: [Event] { state.withLock { $0.events } }
    public var comments: Int { state.withLock { $0.comments } }
    /// The response ended, or the connection closed.
    public var isClosed: Bool { state.withLock { $0.closed } }

    /// Waits until an event satisfies `predicate` (or the stream closes, or `timeout` passes).
    public func waitFor(within timeout: Duration = .seconds(30), _ predicate: ([Event]) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if predicate(events) { return true }
            if isClosed { return predicate(events) }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return predicate(events)
    }

    public func close() async {
        try? await channel.close()
    }

    /// Turns the response into events as it arrives: the head, then the body (gunzipped when the
    /// server compressed it) cut at blank lines.
    private final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPClientResponsePart
        let state: Locked<(head: String?, buffer: String, events: [Event], comments: Int, closed: Bool)>
        private var decompressor: (any NIODecompressor)?

        init(state: Locked<(head: String?, buffer: String, events: [Event], comments: Int, closed: Bool)>) {
            self.state = state
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                if head.headers["Content-Encoding"].first == "gzip" {
                    let decompressor = CompressionAlgorithm.gzip().decompressor
                    try? decompressor.startStream()
                    self.decompressor = decompressor
                }
                let lines =
                    ["HTTP/1.1 \(head.status.code) \(head.status.reasonPhrase)"]
                    + head.headers.map { "\($0.name): \($0.value)" }
                state.withLock { $0.head = lines.joined(separator: "\r\n") }
            case .body(var buffer):
                var text = String(buffer: buffer)
                if let decompressor {
                    guard let inflated = try? buffer.decompressStream(with: decompressor) else {
                        context.close(promise: nil)
                        return
                    }
                    text = String(buffer: inflated)
                }
                append(text)
            case .end:
                // The response is over (the connection may stay open for another request).
                state.withLock { $0.closed = true }
            }
        }

        private func append(_ text: String) {
            state.withLock { state in
                state.buffer += text
                while let end = state.buffer.range(of: "\n\n") {
                    let block = String(state.buffer[..<end.lowerBound])
                    state.buffer = String(state.buffer[end.upperBound...])
                    var event = Event(id: nil, event: nil, data: "")
                    var hasField = false
                    for rawLine in block.split(whereSeparator: \.isNewline) {
                        let line = String(rawLine)
                        if line.hasPrefix(":") {
                            state.comments += 1
                        } else if line.hasPrefix("id: ") {
                            event.id = String(line.dropFirst(4)); hasField = true
                        } else if line.hasPrefix("event: ") {
                            event.event = String(line.dropFirst(7)); hasField = true
                        } else if line.hasPrefix("data: ") {
                            event.data += String(line.dropFirst(6)); hasField = true
                        }
                    }
                    if hasField && (event.event != nil || !event.data.isEmpty) { state.events.append(event) }
                }
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            state.withLock { $0.closed = true }
        }
    }
}
