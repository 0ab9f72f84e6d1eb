import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Per-user limits that hold across gateways (Redis), and misbehaving clients.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct LimitsTests {
    @Test func commandRateAndConnectionsPerUserAreLimited() async throws {
        try await ServiceProcesses.withStack(gatewayEnvironment: [
            "SWITCHBOARD_GATEWAY_COMMANDS_PER_SECOND": "2", "SWITCHBOARD_GATEWAY_COMMAND_BURST": "3",
            "SWITCHBOARD_GATEWAY_MAX_CONNECTIONS_PER_USER": "2",
        ]) { _, url, authority in
            let token = try await authority.mint(user: "ivan")
            let conversation = "rate-\(UUID().uuidString.prefix(8))"
            let (codes, _) = try await ChatClient.withConnection(url: url, token: token) { client -> [String?] in
                for index in 0..<6 {
                    client.send(
                        ClientCommand(
                            id: "s\(index)", type: ClientCommandType.subscribeConversation,
                            data: ["conversationId": .string(conversation)]))
                }
                var codes: [String?] = []
                for _ in 0..<6 {
                    let answer = await client.frames.first(within: .seconds(10)) { $0.correlationId != nil }
                    codes.append(answer.map { $0.frame.error?.code ?? $0.frame.type })
                }
                // PING is never limited.
                client.send(ClientCommand(id: "p", type: ClientCommandType.ping, data: ["timestamp": 1]))
                codes.append(await client.frames.first(within: .seconds(10)) { $0.correlationId == "p" }?.frame.type)
                return codes
            }
            let answers = try #require(codes)
            #expect(answers.prefix(3).allSatisfy { $0 == "ACK" }, "\(answers)")
            #expect(answers.dropFirst(3).prefix(3).contains("RATE_LIMITED"), "\(answers)")
            #expect(answers.last == "PONG")

            // Two connections are allowed; the third is closed with 4503 (do not reconnect).
            let limit = try await ChatClient.withConnection(url: url, token: token) { _ -> UInt16? in
                let second = try await ChatClient.withConnection(url: url, token: token) { _ -> UInt16? in
                    let third = try await ChatClient.withConnection(url: url, token: token) { third in
                        while await third.frames.next(within: .seconds(5)) != nil {}
                        return true
                    }
                    return third.closeCode
                }
                return second.result ?? nil
            }
            let thirdClose: UInt16? = limit.result ?? nil
            #expect(thirdClose == CloseCode.connectionLimit.rawValue)
            #expect(!CloseCode.connectionLimit.shouldReconnect)
        }
    }

    /// One user at every entry point at once, against one connection quota (issue 14's chaos list;
    /// issue 13's one admission path): a chat socket, an SSE stream and a workflow socket use the
    /// three allowed; a fourth through any door (chat, SSE, the OpenAI door) is refused, and the quota
    /// is back once one of the three closes.
    @Test func everyEntryPointCountsAgainstTheSameConnectionQuota() async throws {
        try await ServiceProcesses.withStack(gatewayEnvironment: ["SWITCHBOARD_GATEWAY_MAX_CONNECTIONS_PER_USER": "3"])
        {
            _, url, authority in
            let token = try await authority.mint(user: "quota-\(UUID().uuidString.prefix(6))")
            let port = try #require(URL(string: url)?.port)
            let auth = ["Authorization": "Bearer \(token)"]
            @Sendable func fourthIsRefusedEverywhere() async throws {
                let (_, chatClose) = try await ChatClient.withConnection(url: url, token: token) { client in
                    while await client.frames.next(within: .seconds(5)) != nil {}
                }
                #expect(chatClose == CloseCode.connectionLimit.rawValue, "a fourth chat socket")
                let sse = try await SSEClient.connect(port: port, path: "/api/v1/events/system", headers: auth)
                #expect(await sse.waitFor(within: .seconds(10)) { _ in sse.head != nil })
                #expect(sse.head?.hasPrefix("HTTP/1.1 429") == true, "a fourth stream: \(sse.head ?? "no answer")")
                await sse.close()
                let openAI = try await SSEClient.connect(
                    port: port, path: "/v1/chat/completions", headers: auth, method: "POST",
                    body: #"{"model":"chat-centre","stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
                #expect(await openAI.waitFor(within: .seconds(10)) { _ in openAI.head != nil })
                #expect(
                    openAI.head?.hasPrefix("HTTP/1.1 429") == true,
                    "a fourth OpenAI stream: \(openAI.head ?? "no answer")")
                await openAI.close()
            }
            let (held, _) = try await ChatClient.withConnection(url: url, token: token) { chat -> Bool in
                chat.send(ClientCommand(id: "p", type: ClientCommandType.ping, data: ["timestamp": 1]))
                guard await chat.frames.first(within: .seconds(10), where: { $0.correlationId == "p" }) != nil else {
                    return false
                }
                let stream = try await SSEClient.connect(port: port, path: "/api/v1/events/system", headers: auth)
                defer { Task { await stream.close() } }
                guard
                    await stream.waitFor(within: .seconds(10), { _ in stream.head?.hasPrefix("HTTP/1.1 200") == true })
                else { return false }
                let (workflow, _) = try await WorkflowClient.withConnection(url: url + "/quota", token: token) {
                    client -> Bool in
                    guard await client.frames.first("connection_established") != nil else { return false }
                    try await fourthIsRefusedEverywhere()
                    return true
                }
                // The workflow socket has closed: its place is free again, for any door.
                guard workflow == true else { return false }
                let again = try await SSEClient.connect(port: port, path: "/api/v1/events/system", headers: auth)
                defer { Task { await again.close() } }
                return await eventually(timeout: .seconds(10)) {
                    again.head?.hasPrefix("HTTP/1.1 200") == true
                }
            }
            #expect(held == true)
        }
    }

    /// Seed 000's `rate_limit_exceeded` disconnection: a client that stays over the rate is closed with 4504.
    @Test func aSustainedExcessOverTheRateIsClosedWith4504() async throws {
        try await ServiceProcesses.withStack(gatewayEnvironment: [
            "SWITCHBOARD_GATEWAY_COMMANDS_PER_SECOND": "2", "SWITCHBOARD_GATEWAY_COMMAND_BURST": "3",
        ]) { _, url, authority in
            let token = try await authority.mint(user: "flood-\(UUID().uuidString.prefix(6))")
            let started = ContinuousClock.now
            // What the gateway answered, seen as it arrives (the body is cut short by the close).
            let answers = Locked<[String]>([])
            let observer: ChatClient.TextObserver = { text, _ in
                if text.contains(#""RATE_LIMITED""#) { answers.withLock { $0.append("RATE_LIMITED") } }
                if text.contains(#""type":"ACK""#) { answers.withLock { $0.append("ACK") } }
                return true
            }
            let (_, close) = try await ChatClient.withConnection(url: url, token: token, observer: observer) { client in
                // 20 commands a second, ten times the rate, for up to 8 s.
                for index in 0..<160 {
                    client.send(
                        ClientCommand(
                            id: "p\(index)", type: ClientCommandType.subscribeConversation,
                            data: ["conversationId": "flood"]))
                    try? await Task.sleep(for: .milliseconds(50))
                }
                while await client.frames.next(within: .seconds(5)) != nil {}
                return true
            }
            #expect(close == CloseCode.tooManyRequests.rawValue)
            #expect(ContinuousClock.now - started >= .seconds(3), "a burst is not closed, only an excess that lasts")
            // Before the close, the refusals were answered one by one, and some commands went through.
            let seen = answers.withLock { $0 }
            #expect(seen.contains("RATE_LIMITED") && seen.contains("ACK"), "\(seen)")
        }
    }

    @Test func aClientSendingOnlyGarbageIsClosedAndTheOthersAreNotAffected() async throws {
        try await ServiceProcesses.withStack { _, url, authority in
            let bad = try await authority.mint(user: "mallory")
            let good = try await authority.mint(user: "judy")
            let (_, badClose) = try await ChatClient.withConnection(url: url, token: bad) { client in
                for index in 0..<12 { client.sendRaw("garbage \(index) {{{") }
                while await client.frames.next(within: .seconds(10)) != nil {}
                return true
            }
            #expect(badClose == CloseCode.badRequest.rawValue)
            // Judy, on the same gateway, still chats normally.
            let (end, _) = try await ChatClient.withConnection(url: url, token: good) { client -> ServerFrame? in
                client.send(
                    ClientCommand(
                        id: "m", type: ClientCommandType.sendMessage,
                        data: [
                            "conversationId": .string("judy-\(UUID().uuidString.prefix(6))"), "content": "still fine?",
                        ]))
                return await client.frames.first(within: .seconds(20)) { $0.type == FrameType.messageStreamEnd }?.frame
            }
            #expect(end??.data["finalMessage"]?["content"]?.stringValue?.contains("still fine?") == true)
        }
    }

    @Test func connectionStatisticsCoverTheCluster() async throws {
        try await ServiceProcesses.withStack { stack, url, authority in
            let token = try await authority.mint(user: "kim")
            // The cluster's figures are Switchboard's addition to seed 003's answer, for admins only.
            let admin = try await authority.mint(user: "kim-ops", roles: ["admin"])
            let port = try #require(URL(string: url)?.port)
            try await ChatClient.withConnection(url: url, token: token) { client in
                client.send(ClientCommand(id: "p", type: ClientCommandType.ping, data: ["timestamp": 1]))
                _ = await client.frames.first(within: .seconds(10)) { $0.type == "PONG" }
                // The heartbeat publishes this gateway's count within its interval.
                let counted = await eventually(timeout: .seconds(15)) {
                    guard let stats = await Self.json("http://127.0.0.1:\(port)/api/connections", token: admin),
                        let gateways = stats["gateways"] as? [String: Int]
                    else { return false }
                    return gateways["gateway-\(port)"] == 1
                }
                #expect(counted)
                let own = await Self.json("http://127.0.0.1:\(port)/api/connections", token: token)
                #expect(own?["gateways"] == nil && own?["total_connections"] as? Int == 0, "\(String(describing: own))")
                return true
            }
            #expect(await ServiceProcesses.httpStatus("http://127.0.0.1:\(port)/api/connections") == 401)
            _ = stack
        }
    }

    static func json(_ url: String, token: String) async -> [String: Any]? {
        var request = URLRequest(url: URL(string: url)!)
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        guard let (data, _) = try? await URLSession.shared.data(for: request) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }
}
