import Foundation
#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardTestSupport
import SwitchboardVoice
import Testing

/// Issue 14 items 3, 5, 10 and 11 against the real services: secrets and tokens, the admin port, a
/// reused client message id, and the bounds on what a client chooses the size of.
@Suite(.serialized, .timeLimit(.minutes(6)))
struct SafetyFlowTests {
    static func get(_ url: String, token: String? = nil) async throws -> (status: Int, body: String) {
        var request = URLRequest(url: URL(string: url)!)
        request.timeoutInterval = 5
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    // MARK: Item 3: secrets at start-up

    /// A service refuses the published secrets (and a missing one) unless development mode says it is
    /// a laptop; with development mode it runs on the built-in secret.
    @Test func servicesRefusePublishedSecretsOutsideDevelopmentMode() async throws {
        try await TestEnvironment.requireKafka()
        try await TestEnvironment.requireRedis()
        let stack = try ServiceProcesses()
        // "" is unset for the services (the harness sets a secret of its own otherwise).
        let refused: [(String, [String: String])] = [
            ("gateway", ["SWITCHBOARD_JWT_SECRET": "REPLACE-ME-with-a-long-random-secret"]),
            ("notifier", ["SWITCHBOARD_JWT_SECRET": ""]),
            ("orchestrator", ["SWITCHBOARD_JWT_SECRET": "switchboard-development-secret-not-for-production"]),
        ]
        for (name, environment) in refused { try stack.start(name, environment: environment) }
        for (name, _) in refused {
            let process = try #require(stack.process(named: name))
            let exited = await eventually(timeout: .seconds(30), every: .milliseconds(100)) { !process.isRunning }
            #expect(exited, "\(name) started with a published or missing secret")
            #expect(process.terminationStatus != 0)
            #expect(
                stack.log(of: name).contains("SWITCHBOARD_JWT_SECRET"),
                "\(name) does not name the setting:\n\(stack.log(of: name).suffix(800))")
        }
        await stack.stopAll()

        let development = try ServiceProcesses()
        let notifier = try development.start(
            "notifier", environment: ["SWITCHBOARD_JWT_SECRET": "", "SWITCHBOARD_DEVELOPMENT_MODE": "1"])
        try await development.waitUntilReady()
        #expect(development.log(of: "notifier").contains("development mode"))
        #expect(try await Self.get("http://127.0.0.1:\(notifier.adminPort)/readyz").status == 200)
        let codes = await development.stopAll()
        #expect(codes.values.allSatisfy { $0 == 0 })
    }

    // MARK: Items 3 and 5: tokens, devices and the admin port on one stack

    static let audience = "switchboard-e2e"

    @Test func tokensAreCheckedStrictlySocketsCloseAtExpiryAndTheAdminPortIsApart() async throws {
        let gatewayEnvironment = DeviceActivationFlowTests.gatewayEnvironment.merging([
            "SWITCHBOARD_JWT_AUDIENCE": Self.audience, "SWITCHBOARD_JWT_MAX_LIFETIME_SECONDS": "86400",
        ]) { $1 }
        try await VoiceFlowTests.withVoiceStack(gatewayEnvironment: gatewayEnvironment) { stack in
            let base = stack.httpBase
            let secret = stack.processes.jwtSecret
            let authority = try await TokenAuthority(secret: secret, policy: TokenPolicy(audience: Self.audience))

            // Item 5: /readyz and /metrics only on each service's admin port; /healthz on both.
            for name in ["gateway", "orchestrator", "agent-worker", "voice-worker", "workflow-runner", "notifier"] {
                let service = try #require(stack.processes.logs(of: name).first)
                let admin = "http://127.0.0.1:\(service.adminPort)"
                let public_ = "http://127.0.0.1:\(service.httpPort)"
                #expect(try await Self.get("\(admin)/readyz").status == 200, "\(name) admin /readyz")
                let metrics = try await Self.get("\(admin)/metrics")
                #expect(metrics.status == 200 && metrics.body.contains("# TYPE"), "\(name) admin /metrics")
                #expect(try await Self.get("\(admin)/healthz").status == 200)
                #expect(try await Self.get("\(public_)/healthz").status == 200, "\(name) public /healthz")
                #expect(try await Self.get("\(public_)/metrics").status == 404, "\(name) serves /metrics publicly")
                #expect(try await Self.get("\(public_)/readyz").status == 404, "\(name) serves /readyz publicly")
            }

            // Item 3: the auth negatives. A plain GET of /ws answers what its upgrade would.
            let header: [String: Any] = ["alg": "HS256", "typ": "JWT"]
            let claims = ForgedTokens.claims(user: "mallory", ["aud": Self.audience])
            let negatives: [(String, String, String)] = [
                (
                    "alg none", ForgedTokens.token(header: ["alg": "none", "typ": "JWT"], claims: claims, secret: nil),
                    "algorithm"
                ),
                (
                    "RS256",
                    ForgedTokens.token(header: ["alg": "RS256", "typ": "JWT"], claims: claims, secret: secret),
                    "algorithm"
                ),
                (
                    "wrong aud",
                    ForgedTokens.token(
                        header: header, claims: ForgedTokens.claims(user: "mallory", ["aud": "someone-else"]),
                        secret: secret), "aud"
                ),
                (
                    "no aud",
                    ForgedTokens.token(header: header, claims: ForgedTokens.claims(user: "mallory"), secret: secret),
                    "aud"
                ),
                (
                    "far-future exp",
                    ForgedTokens.token(
                        header: header,
                        claims: ForgedTokens.claims(user: "mallory", lifetime: 30 * 24 * 3600, ["aud": Self.audience]),
                        secret: secret), "lifetime"
                ),
                (
                    "nbf in the future",
                    ForgedTokens.token(
                        header: header,
                        claims: ForgedTokens.claims(
                            user: "mallory", ["aud": Self.audience, "nbf": Int(Date().timeIntervalSince1970) + 600]),
                        secret: secret), "nbf"
                ),
            ]
            for (name, token, reason) in negatives {
                let answer = try await Self.get("\(base)/ws", token: token)
                #expect(
                    answer.status == 401 && answer.body.contains(reason), "\(name): \(answer.status) \(answer.body)")
                await #expect(throws: (any Error).self, "\(name) opened a socket") {
                    _ = try await ChatClient.withConnection(
                        url: "\(stack.webSocketURL.replacingOccurrences(of: "/xiaozhi/v1/", with: "/ws"))", token: token
                    ) { _ in () }
                }
            }
            // The well-formed one passes (so the refusals above are the checks, not the setup).
            let good = ForgedTokens.token(header: header, claims: claims, secret: secret)
            #expect(try await Self.get("\(base)/api/v1/system/status", token: good).status == 200)

            // Expired while connected: the socket is closed with 4500 at the token's exp.
            let url = stack.webSocketURL.replacingOccurrences(of: "/xiaozhi/v1/", with: "/ws")
            let shortLived = try await authority.mint(user: "cinderella", lifetime: .seconds(3))
            let started = ContinuousClock.now
            let (_, code) = try await ChatClient.withConnection(url: url, token: shortLived) { client in
                client.send(ClientCommand(id: "p", type: ClientCommandType.ping, data: ["timestamp": 1]))
                #expect(await client.frames.first(within: .seconds(5)) { $0.correlationId == "p" } != nil)
                while await client.frames.next(within: .seconds(15)) != nil {}
            }
            #expect(code == CloseCode.unauthorized.rawValue)
            #expect(ContinuousClock.now - started < .seconds(12))
            // An SSE stream outlives no token either: `event: close` with 4500, then the response ends.
            let sseToken = try await authority.mint(user: "cinderella", lifetime: .seconds(3))
            let port = try #require(URL(string: base)?.port)
            let stream = try await SSEClient.connect(
                port: port, path: "/api/v1/events/system", headers: ["Authorization": "Bearer \(sseToken)"])
            let sseStarted = ContinuousClock.now
            #expect(await stream.waitFor(within: .seconds(15)) { $0.contains { $0.event == "close" } })
            #expect(
                stream.events.last { $0.event == "close" }?.data.contains("\(CloseCode.unauthorized.rawValue)") == true)
            #expect(await eventually(timeout: .seconds(5)) { stream.isClosed })
            #expect(ContinuousClock.now - sseStarted < .seconds(12))
            await stream.close()

            // A device token is its device's only: bound device A's token does not open B's socket.
            let owner = try await authority.mint(user: "owner-\(UUID().uuidString.prefix(6))")
            let deviceA = VoiceFlowTests.deviceID()
            let clientA = UUID().uuidString
            let (deviceURL, deviceToken) = try await DeviceActivationFlowTests.bind(
                base, deviceID: deviceA, clientID: clientA, user: owner)
            await #expect(throws: (any Error).self, "device A's token opened device B's socket") {
                _ = try await DeviceSimulator.connect(
                    url: deviceURL, token: deviceToken, deviceID: VoiceFlowTests.deviceID(), clientID: clientA
                ) { _ in () }
            }
            await #expect(throws: (any Error).self, "device A's token opened A's socket for another client") {
                _ = try await DeviceSimulator.connect(
                    url: deviceURL, token: deviceToken, deviceID: deviceA, clientID: "another-client"
                ) { _ in () }
            }

            // Item 11: 31 s of quiet audio in manual mode (a device that never says `listen stop`), sent at
            // 45 packets a second: the voice-worker answers what the first 30 s held and says why.
            let quiet = try await DeviceSimulator.speech(
                "a", silenceBefore: .milliseconds(300), silenceAfter: .seconds(31))
            let (manualAlert, _) = try await DeviceSimulator.connect(
                url: deviceURL, token: deviceToken, deviceID: deviceA, clientID: clientA
            ) {
                device -> String? in
                let session = try await VoiceFlowTests.hello(device)
                device.send(.listen(.start, mode: .manual, sessionId: session))
                try await device.stream(quiet, interval: .milliseconds(22))
                return await device.waitFor(type: "alert", within: .seconds(20))?.message
            }
            #expect((manualAlert ?? nil)?.contains("30 s") == true, "\(String(describing: manualAlert))")

            // Item 11: a device sending audio packets faster than any real one is closed with 4504.
            let (_, flooded) = try await DeviceSimulator.connect(
                url: deviceURL, token: deviceToken, deviceID: deviceA, clientID: clientA
            ) {
                device -> Bool in
                _ = try await VoiceFlowTests.hello(device)
                for packet in quiet.prefix(400) { device.sendAudio(packet) }
                while await device.next(within: .seconds(10)) != nil {}
                return true
            }
            #expect(flooded == CloseCode.tooManyRequests.rawValue)
        }
    }

    // MARK: Item 10 and the orchestrator's queue (item 11)

    @Test func aReusedClientMessageIDIsRejectedAsADuplicateAndABusyQueueIsBounded() async throws {
        try await ServiceProcesses.withStack(tokensPerSecond: 40) { _, url, authority in
            let token = try await authority.mint(user: "readme-\(UUID().uuidString.prefix(6))")
            let conversation = "demo-\(UUID().uuidString.prefix(8))"
            @Sendable func send(_ client: ChatClient, id: String, in conversation: String, busyPolicy: String? = nil) {
                var data: [String: JSONValue] = [
                    "conversationId": .string(conversation), "content": "hello", "pattern": "direct",
                ]
                if let busyPolicy { data["busyPolicy"] = .string(busyPolicy) }
                client.send(ClientCommand(id: id, type: ClientCommandType.sendMessage, data: .object(data)))
            }
            // The README's example, run twice: the first is answered; the second is told why not.
            let (firstID, _) = try await ChatClient.withConnection(url: url, token: token) { client -> String? in
                send(client, id: "c1", in: conversation)
                let ack = await client.frames.first(within: .seconds(10)) { $0.correlationId == "c1" }
                _ = await client.frames.first(within: .seconds(30)) { $0.type == FrameType.messageStreamEnd }
                return ack?.frame.data["messageId"]?.stringValue
            }
            let first = try #require(firstID ?? nil)
            let (rejection, _) = try await ChatClient.withConnection(url: url, token: token) { client -> ServerFrame? in
                send(client, id: "c1", in: conversation)
                return await client.frames.first(within: .seconds(20)) {
                    $0.type == FrameType.messageRejected || $0.type == FrameType.messageStreamEnd
                }?.frame
            }
            let rejected = try #require(rejection ?? nil)
            #expect(rejected.type == FrameType.messageRejected)
            #expect(rejected.data["reason"] == "duplicate" && rejected.data["duplicateOf"]?.stringValue == first)
            #expect(rejected.data["clientMessageId"] == "c1")

            // A busy conversation queues at most maxQueuedMessages; the next is rejected `queue_full`.
            let busy = "busy-\(UUID().uuidString.prefix(8))"
            let (queueFull, _) = try await ChatClient.withConnection(url: url, token: token) { client -> ServerFrame? in
                send(client, id: "b0", in: busy)
                _ = await client.frames.first(within: .seconds(10)) { $0.type == FrameType.messageStreamStart }
                for index in 1...21 { send(client, id: "b\(index)", in: busy, busyPolicy: "enqueue") }
                return await client.frames.first(within: .seconds(20)) { $0.type == FrameType.messageRejected }?.frame
            }
            let full = try #require(queueFull ?? nil)
            #expect(full.data["reason"] == "queue_full" && full.data["clientMessageId"] == "b21", "\(full.data)")
            #expect(full.data["limit"]?.intValue == 20)
        }
    }

    // MARK: Item 11: the gateway's bounds

    @Test func clientIDsFeedsAndSlowHTTPClientsAreBounded() async throws {
        try await ServiceProcesses.withStack(gatewayEnvironment: [
            "SWITCHBOARD_GATEWAY_COMMANDS_PER_SECOND": "1000", "SWITCHBOARD_GATEWAY_COMMAND_BURST": "1000",
            "SWITCHBOARD_GATEWAY_HTTP_IDLE_TIMEOUT_SECONDS": "2", "SWITCHBOARD_GATEWAY_HTTP_BODY_TIMEOUT_SECONDS": "2",
        ]) { stack, url, authority in
            let user = "bounded-\(UUID().uuidString.prefix(6))"
            let token = try await authority.mint(user: user)
            let (answers, _) = try await ChatClient.withConnection(url: url, token: token) {
                client -> [String: String] in
                var answers: [String: String] = [:]
                // Client ids: 1-128 characters.
                let long = String(repeating: "x", count: 129)
                client.sendRaw(#"{"id":"\#(long)","type":"PING","timestamp":0,"data":{}}"#)
                client.sendRaw(#"{"id":"","type":"PING","timestamp":0,"data":{}}"#)
                for label in ["long", "empty"] {
                    let error = await client.frames.first(within: .seconds(5)) { $0.type == "ERROR" }
                    answers[label] = error?.frame.error?.code
                }
                // 100 conversations followed; the 101st is refused, and an unsubscribe makes room.
                for index in 0..<GatewayLimitsMirror.conversationsPerConnection {
                    client.send(
                        ClientCommand(
                            id: "s\(index)", type: ClientCommandType.subscribeConversation,
                            data: ["conversationId": .string("\(user)-\(index)")]))
                }
                var acks = 0
                while acks < GatewayLimitsMirror.conversationsPerConnection,
                    let frame = await client.frames.next(within: .seconds(10))?.frame
                {
                    if frame.type == "ACK", frame.correlationId?.hasPrefix("s") == true { acks += 1 }
                }
                answers["acks"] = String(acks)
                client.send(
                    ClientCommand(
                        id: "over", type: ClientCommandType.subscribeConversation,
                        data: ["conversationId": .string("\(user)-over")]))
                answers["over"] = await client.frames.first(within: .seconds(10)) { $0.correlationId == "over" }?.frame
                    .error?.code
                client.send(
                    ClientCommand(
                        id: "leave", type: ClientCommandType.unsubscribeConversation,
                        data: ["conversationId": .string("\(user)-0")]))
                _ = await client.frames.first(within: .seconds(10)) { $0.correlationId == "leave" }
                client.send(
                    ClientCommand(
                        id: "again", type: ClientCommandType.subscribeConversation,
                        data: ["conversationId": .string("\(user)-over")]))
                answers["again"] = await client.frames.first(within: .seconds(10)) { $0.correlationId == "again" }?
                    .frame.type
                return answers
            }
            let seen = try #require(answers)
            #expect(
                seen["long"] == ErrorCode.invalidArgument.rawValue
                    && seen["empty"] == ErrorCode.invalidArgument.rawValue, "\(seen)")
            #expect(seen["acks"] == String(GatewayLimitsMirror.conversationsPerConnection), "\(seen)")
            #expect(seen["over"] == ErrorCode.limitExceeded.rawValue, "\(seen)")
            #expect(seen["again"] == "ACK", "\(seen)")

            // Slowloris: a keep-alive connection that goes quiet, and a body trickled a byte at a time.
            let port = try #require(URL(string: url)?.port)
            let idle = try StalledWebSocket(port: port)
            try idle.sendRaw("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            let idleStart = ContinuousClock.now
            let idleEnd = idle.drain(timeout: .seconds(8))
            #expect(idleEnd.closed && String(decoding: idleEnd.bytes, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
            let idleFor = ContinuousClock.now - idleStart
            #expect(idleFor >= .milliseconds(1500) && idleFor < .seconds(6), "closed after \(idleFor)")

            let trickle = try StalledWebSocket(port: port)
            try trickle.sendRaw(
                "POST /api/v1/devices/bind HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\n"
                    + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            let trickleStart = ContinuousClock.now
            var cut = false
            for _ in 0..<16 {
                try? await Task.sleep(for: .milliseconds(400))
                // Each byte keeps the connection from being idle; only the body deadline ends it.
                if (try? trickle.sendRaw(" ")) == nil { cut = true; break }
            }
            let trickleEnd = trickle.drain(timeout: .seconds(3))
            #expect(cut || trickleEnd.closed, "a trickled body kept its connection")
            #expect(ContinuousClock.now - trickleStart < .seconds(10))
            // It was the body deadline that ended it (not an answer to a complete request).
            let adminPort = try #require(stack.adminPort(of: "gateway"))
            let metrics = try await Self.get("http://127.0.0.1:\(adminPort)/metrics").body
            #expect(MisbehavingClientTests.value(of: "sb_gateway_body_timeouts_total", in: metrics) ?? 0 >= 1)

            // A stream being answered is not idle: SSE stays open past the idle timeout.
            let stream = try StalledWebSocket(port: port)
            try stream.sendRaw(
                "GET /api/v1/events/system HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\nAccept: text/event-stream\r\n\r\n"
            )
            let streaming = stream.drain(timeout: .seconds(4))
            #expect(
                !streaming.closed && String(decoding: streaming.bytes, as: UTF8.self).hasPrefix("HTTP/1.1 200"),
                "\(String(decoding: streaming.bytes, as: UTF8.self).prefix(200))")
        }
    }
}

extension SafetyFlowTests {
    /// Item 11: the server's own failures (here: no orchestrator has announced the team, so
    /// REQUEST_ROLE_FOCUS is answered UNAVAILABLE) do not count towards the 10-bad-commands close;
    /// the client's own mistakes still do.
    @Test func theServersFailuresDoNotCloseAClientsConnection() async throws {
        try await TestEnvironment.requireKafka()
        try await TestEnvironment.requireRedis()
        try await TestEnvironment.requirePostgres()
        // No team announced: an earlier stack's orchestrator may have left its card.
        let redis = RedisClient(
            configuration: RedisClientConfiguration(endpoint: TestEnvironment.redisEndpoint),
            logger: TestEnvironment.logger)
        _ = try await redis.send("DEL", RedisArgument(Keyspace.Cluster.team))
        await redis.close()
        let stack = try ServiceProcesses()
        let gateway = try stack.start("gateway")
        do {
            try await stack.waitUntilReady()
            let authority = try await TokenAuthority(secret: stack.jwtSecret)
            let token = try await authority.mint(user: "unlucky-\(UUID().uuidString.prefix(6))")
            let url = "ws://127.0.0.1:\(gateway.httpPort)/ws"
            let (answers, serverFailuresClose) = try await ChatClient.withConnection(url: url, token: token) {
                client -> [String] in
                var codes: [String] = []
                for index in 0..<12 {
                    client.send(
                        ClientCommand(
                            id: "f\(index)", type: ClientCommandType.requestRoleFocus,
                            data: ["conversationId": .string("focus-\(index)"), "role": "Alex"]))
                    codes.append(
                        await client.frames.first(within: .seconds(5)) { $0.correlationId == "f\(index)" }?.frame.error?
                            .code ?? "none")
                }
                client.send(ClientCommand(id: "p", type: ClientCommandType.ping, data: ["timestamp": 1]))
                codes.append(
                    await client.frames.first(within: .seconds(5)) { $0.correlationId == "p" }?.frame.type ?? "none")
                return codes
            }
            #expect(answers?.prefix(12).allSatisfy { $0 == ErrorCode.unavailable.rawValue } == true, "\(answers ?? [])")
            #expect(answers?.last == "PONG")
            #expect(serverFailuresClose == nil, "closed with \(serverFailuresClose ?? 0) for the server's failures")
            // The same number of the client's own mistakes closes it with 4501.
            let (_, clientMistakesClose) = try await ChatClient.withConnection(url: url, token: token) { client in
                for index in 0..<12 {
                    client.send(ClientCommand(id: "u\(index)", type: "NOT_A_COMMAND"))
                }
                while await client.frames.next(within: .seconds(10)) != nil {}
            }
            #expect(clientMistakesClose == CloseCode.badRequest.rawValue)
        } catch {
            await stack.stopAll()
            throw error
        }
        let codes = await stack.stopAll()
        #expect(codes.values.allSatisfy { $0 == 0 })
    }
}

/// The gateway's bounds as its tests expect them (the gateway's own constants are internal to it).
enum GatewayLimitsMirror {
    static let conversationsPerConnection = 100
}
