import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// Bisheng's chat WebSocket (seed 002) end to end through the real services: `{type, data,
/// trace_id}` frames, the session's life cycle kept in PostgreSQL across reconnects, the seed's limits.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct BishengChatTests {
    /// Connects to Bisheng's socket, runs `body` with the client and the frames received so far.
    static func withChat<T: Sendable>(
        _ url: String, token: String?, observing frames: Frames = Frames(),
        _ body: @escaping @Sendable (ChatClient, Frames) async throws -> T
    ) async throws -> (result: T?, closeCode: UInt16?) {
        return try await ChatClient.withConnection(
            url: url, token: token,
            observer: { text, _ in
                frames.append(text)
                return false
            }
        ) { client in try await body(client, frames) }
    }

    final class Frames: Sendable {
        private let received = Locked<[JSONValue]>([])

        func append(_ text: String) {
            let value = (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) ?? .null
            received.withLock { $0.append(value) }
        }

        var all: [JSONValue] { received.withLock { $0 } }

        /// Waits for the first frame after `index` that matches; nil after `timeout`.
        func first(after index: Int = 0, timeout: Duration = .seconds(20), where match: @Sendable (JSONValue) -> Bool)
            async
            -> JSONValue?
        {
            let found = Locked<JSONValue?>(nil)
            _ = await eventually(timeout: timeout) {
                let hit = self.all.dropFirst(index).first(where: match)
                found.withLock { $0 = hit }
                return hit != nil
            }
            return found.withLock { $0 }
        }
    }

    static func frame(_ type: String, _ data: JSONValue, trace: String? = nil) -> String {
        let value: JSONValue = ["type": .string(type), "data": data, "trace_id": trace.map(JSONValue.string) ?? .null]
        return String(decoding: try! JSONEncoder().encode(value), as: UTF8.self)
    }

    @Test func theProtocolEndToEndWithTheSessionRestoredOnReconnect() async throws {
        try await TestEnvironment.requirePostgres()
        try await ServiceProcesses.withStack { _, url, authority in
            let base = url.replacingOccurrences(of: "/ws", with: "")
            let chatID = "bs-\(UUID().uuidString.prefix(8))"
            let chatURL = "\(base)/chat/flow-7?chat_id=\(chatID)"
            let token = try await authority.mint(user: "lin")
            let (first, _) = try await Self.withChat(chatURL, token: token) { client, frames -> [JSONValue] in
                let start = await frames.first { $0["type"] == "start" }
                #expect(start?["data"]?["state"] == "initialised" && start?["data"]?["resumed"] == false)
                #expect(start?["data"]?["flow_id"] == "flow-7")
                client.sendRaw(Self.frame("message", ["content": "hello bisheng", "pattern": "direct"], trace: "t1"))
                _ = await frames.first { $0["type"] == "end" }
                // Seed 002's max_message_length, and unknown types: clear errors, the connection stays.
                client.sendRaw(
                    Self.frame("message", ["content": .string(String(repeating: "字", count: 10_001))], trace: "t2"))
                client.sendRaw(Self.frame("dance", [:], trace: "t3"))
                client.sendRaw("not json")
                _ = await frames.first { $0["data"]?["code"] == "BAD_FRAME" }
                return frames.all
            }
            let frames = try #require(first)
            let types = frames.compactMap { $0["type"]?.stringValue }
            #expect(types.first == "start")
            let accepted = try #require(frames.first { $0["data"]?["stage"] == "accepted" })
            #expect(accepted["type"] == "progress" && accepted["trace_id"] == "t1")
            let chunks = frames.filter { $0["type"] == "message" }
            #expect(!chunks.isEmpty)
            let result = try #require(frames.first { $0["type"] == "result" })
            #expect(result["data"]?["status"] == "completed")
            #expect(
                result["data"]?["content"]?.stringValue
                    == chunks.compactMap { $0["data"]?["chunk"]?.stringValue }.joined())
            // Everything of the turn carries the run's trace id (the user message's id).
            #expect(result["trace_id"] == accepted["data"]?["message_id"])
            let order = ["message", "result", "end"].compactMap { type in types.firstIndex(of: type) }
            #expect(order == order.sorted() && order.count == 3)
            #expect(
                frames.contains {
                    $0["type"] == "error" && $0["trace_id"] == "t2" && $0["data"]?["code"] == "CONTENT_TOO_LONG"
                })
            #expect(
                frames.contains {
                    $0["type"] == "error" && $0["trace_id"] == "t3" && $0["data"]?["code"] == "UNKNOWN_TYPE"
                })

            // The persistence consumer moved the session on; a reconnect (token in the query) restores it.
            let stored = await eventually(timeout: .seconds(20)) {
                let answer = try? await HistoryFlowTests.http(
                    "GET", base.replacingOccurrences(of: "ws://", with: "http://") + "/chat/session/\(chatID)",
                    token: token)
                return answer?.json["data"]?["state"] == "waiting_for_input"
                    && answer?.json["data"]?["message_count"] == 2
            }
            #expect(stored)
            // The server closes after answering `end`, which may cut the body short: frames are kept outside it.
            let reconnected = Frames()
            let (_, closeCode) = try await Self.withChat(
                chatURL + "&token=\(token)", token: nil, observing: reconnected
            ) { client, frames in
                _ = await frames.first { $0["type"] == "start" }
                client.sendRaw(Self.frame("end", [:], trace: "bye"))
                _ = await frames.first { $0["type"] == "end" }
                try await Task.sleep(for: .seconds(5))
            }
            let second = reconnected.all.first { $0["type"] == "start" }
            #expect(second?["data"]?["state"] == "waiting_for_input")
            #expect(second?["data"]?["resumed"] == true && second?["data"]?["message_count"] == 2)
            #expect(
                reconnected.all.contains {
                    $0["type"] == "end" && $0["trace_id"] == "bye" && $0["data"]?["state"] == "ended"
                })
            #expect(closeCode == CloseCode.sessionEnded.rawValue)
            let ended = try await HistoryFlowTests.http(
                "GET", base.replacingOccurrences(of: "ws://", with: "http://") + "/chat/session/\(chatID)", token: token
            )
            #expect(ended.json["data"]?["state"] == "ended")

            // Someone else's session: an error frame with the code, then 4502.
            let intruder = try await authority.mint(user: "mallory")
            let refused = Frames()
            let (_, refusedCode) = try await Self.withChat(chatURL, token: intruder, observing: refused) { _, _ in
                try await Task.sleep(for: .seconds(5))
            }
            #expect(refused.all.first?["data"]?["code"] == "PERMISSION_DENIED")
            #expect(refusedCode == CloseCode.permissionDenied.rawValue)
        }
    }

    @Test func seedLimitsConcurrentSessionsAndConnectionTimeout() async throws {
        try await TestEnvironment.requirePostgres()
        let limits = [
            "SWITCHBOARD_GATEWAY_CHAT_MAX_SESSIONS": "1", "SWITCHBOARD_GATEWAY_CHAT_CONNECTION_TIMEOUT_SECONDS": "4",
        ]
        try await ServiceProcesses.withStack(gatewayEnvironment: limits) { stack, url, authority in
            let base = url.replacingOccurrences(of: "/ws", with: "")
            // max_concurrent_sessions counts the sessions of every gateway: the second goes to another one.
            let other = try stack.start("gateway", environment: limits)
            try await stack.waitUntilReady()
            let otherBase = "ws://127.0.0.1:\(other.httpPort)"
            let token = try await authority.mint(user: "limits")
            let started = ContinuousClock.now
            let first = Frames()
            let refused = Frames()
            let refusedCode = Locked<UInt16?>(nil)
            let (_, idleCode) = try await Self.withChat(
                "\(base)/chat/f?chat_id=lim-a-\(UUID().uuidString.prefix(6))", token: token, observing: first
            ) {
                _, frames in
                _ = await frames.first { $0["type"] == "start" }
                // A second session, on another gateway, is over max_concurrent_sessions (1 here).
                do {
                    let (_, code) = try await Self.withChat(
                        "\(otherBase)/chat/f?chat_id=lim-b", token: token, observing: refused
                    ) { _, _ in
                        try await Task.sleep(for: .seconds(5))
                    }
                    refusedCode.withLock { $0 = code }
                } catch {
                    Issue.record("the second connection failed: \(error)")
                }
                // Silent past connection_timeout (4 s here): told why, then closed.
                try await Task.sleep(for: .seconds(15))
            }
            #expect(first.all.first?["type"] == "start")
            #expect(refused.all.first?["data"]?["code"] == "TOO_MANY_SESSIONS")
            #expect(refusedCode.withLock { $0 } == CloseCode.connectionLimit.rawValue)
            #expect(first.all.contains { $0["type"] == "error" && $0["data"]?["code"] == "CONNECTION_TIMEOUT" })
            #expect(idleCode == CloseCode.idleTimeout.rawValue)
            #expect(ContinuousClock.now - started >= .seconds(4))
        }
    }
}
