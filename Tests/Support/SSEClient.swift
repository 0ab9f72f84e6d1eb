import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A minimal Server-Sent Events reader over a plain socket, for tests: it sends one GET and parses the
/// stream as it arrives (`id`, `event`, `data`, comments).
public final class SSEClient: Sendable {
    public struct Event: Sendable, Equatable {
        public var id: String?
        public var event: String?
        public var data: String
    }

    private let channel: any Channel
    private let state: Locked<(head: String?, buffer: String, events: [Event], comments: Int, closed: Bool)>

    private init(channel: any Channel, state: Locked<(head: String?, buffer: String, events: [Event], comments: Int, closed: Bool)>) {
        self.channel = channel
        self.state = state
    }

    public static func connect(
        host: String = "127.0.0.1", port: Int, path: String, headers: [String: String] = [:]
    ) async throws -> SSEClient {
        let state = Locked<(head: String?, buffer: String, events: [Event], comments: Int, closed: Bool)>((nil, "", [], 0, false))
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(state: state))
                }
            }
            .connect(host: host, port: port).get()
        var request = "GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nAccept: text/event-stream\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        try await channel.writeAndFlush(ByteBuffer(string: request))
        return SSEClient(channel: channel, state: state)
    }

    /// The response's status line and headers, once received.
    public var head: String? { state.withLock { $0.head } }
    public var events: [Event] { state.withLock { $0.events } }
    public var comments: Int { state.withLock { $0.comments } }
    public var isClosed: Bool { state.withLock { $0.closed } }

    public func close() async {
        try? await channel.close()
    }

    private final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let state: Locked<(head: String?, buffer: String, events: [Event], comments: Int, closed: Bool)>

        init(state: Locked<(head: String?, buffer: String, events: [Event], comments: Int, closed: Bool)>) {
            self.state = state
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let text = String(buffer: unwrapInboundIn(data))
            state.withLock { state in
                state.buffer += text
                if state.head == nil, let end = state.buffer.range(of: "\r\n\r\n") {
                    state.head = String(state.buffer[..<end.lowerBound])
                    state.buffer = String(state.buffer[end.upperBound...])
                }
                guard state.head != nil else { return }
                // Chunked transfer: strip chunk-size lines, keep the payload lines.
                while let end = state.buffer.range(of: "\n\n") {
                    let block = String(state.buffer[..<end.lowerBound])
                    state.buffer = String(state.buffer[end.upperBound...])
                    var event = Event(id: nil, event: nil, data: "")
                    var hasField = false
                    // "\r\n" is one Character in Swift: split on any newline, not on "\n" alone.
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
