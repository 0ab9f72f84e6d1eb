import Foundation
import SwitchboardCLI
import SwitchboardContracts
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

@Suite(.serialized, .timeLimit(.minutes(3)))
struct NotificationTests {
    static func post(_ url: String, token: String, body: String) async throws -> Int? {
        try await HTTPRequests.post(url, token: token, body: body).status
    }

    @Test func notificationsReachTheirUserAndBroadcastsReachEveryone() async throws {
        try await ServiceProcesses.withStack { _, url, authority in
            let base = url.replacingOccurrences(of: "ws://", with: "http://").replacingOccurrences(of: "/ws", with: "")
            let admin = try await authority.mint(user: "ops", roles: ["admin"])
            let plain = try await authority.mint(user: "someone")
            let alice = try await authority.mint(user: "alice-n")
            let bob = try await authority.mint(user: "bob-n")
            #expect(
                try await Self.post(
                    base + "/api/v1/notifications", token: plain,
                    body: #"{"userId":"alice-n","title":"t","message":"m"}"#) == 403)
            #expect(
                try await Self.post(
                    base + "/api/v1/notifications", token: admin, body: #"{"title":"no user","message":"m"}"#) == 400)
            // Seed 003's broadcast takes any JSON, from admins (a chat socket sees an unknown type as info).
            #expect(
                try await Self.post(base + "/api/broadcast", token: plain, body: #"{"title":"t","message":"m"}"#) == 403
            )
            #expect(try await Self.post(base + "/api/broadcast", token: admin, body: "not json") == 400)

            let received = try await ChatClient.withConnection(url: url, token: alice) { aliceClient -> [[String]] in
                let bobFrames = try await ChatClient.withConnection(url: url, token: bob) { bobClient -> [String] in
                    // Both connected (a PING round trip proves the sessions are set up).
                    for client in [aliceClient, bobClient] {
                        client.send(ClientCommand(id: "p", type: ClientCommandType.ping, data: ["timestamp": 1]))
                        _ = await client.frames.first(within: .seconds(10)) { $0.type == "PONG" }
                    }
                    _ = try await Self.post(
                        base + "/api/v1/notifications", token: admin,
                        body: #"{"userId":"alice-n","type":"success","title":"Build","message":"only for alice"}"#)
                    _ = try await Self.post(
                        base + "/api/broadcast", token: admin,
                        body: #"{"type":"warning","title":"Maintenance","message":"for everyone"}"#)
                    var titles: [String] = []
                    while let frame = await bobClient.frames.first(
                        within: .seconds(5), where: { $0.type == FrameType.userNotification })
                    {
                        titles.append(frame.frame.data["message"]?.stringValue ?? "")
                    }
                    return titles
                }
                var aliceTitles: [String] = []
                while let frame = await aliceClient.frames.first(
                    within: .seconds(5), where: { $0.type == FrameType.userNotification })
                {
                    aliceTitles.append(frame.frame.data["message"]?.stringValue ?? "")
                }
                return [aliceTitles, bobFrames.result ?? []]
            }
            let lists = try #require(received.result)
            #expect(Set(lists[0]) == ["only for alice", "for everyone"])
            #expect(lists[1] == ["for everyone"])
        }
    }
}

@Suite(.serialized, .timeLimit(.minutes(3)))
struct SystemStatusTests {
    @Test func theSystemChannelReportsServicesComingAndGoing() async throws {
        try await ServiceProcesses.withStack { stack, url, authority in
            let token = try await authority.mint(user: "watcher")
            let statusURL = url.replacingOccurrences(of: "ws://", with: "http://").replacingOccurrences(
                of: "/ws", with: "/api/v1/system/status")
            // Every kind has a ready instance once the heartbeats are in.
            let operational = await eventually(timeout: .seconds(20)) {
                guard let status = await LimitsTests.json(statusURL, token: token),
                    let services = status["services"] as? [[String: Any]]
                else { return false }
                return status["status"] as? String == "operational" && services.count == 6
                    && services.allSatisfy { ($0["readyInstances"] as? Int ?? 0) >= 1 }
            }
            #expect(operational)
            let (frame, _) = try await ChatClient.withConnection(url: url, token: token) { client -> ServerFrame? in
                client.send(ClientCommand(id: "p", type: ClientCommandType.ping, data: ["timestamp": 1]))
                _ = await client.frames.first(within: .seconds(10)) { $0.type == "PONG" }
                stack.process(named: "voice-worker")?.terminate()
                return await client.frames.first(within: .seconds(30)) {
                    $0.type == FrameType.systemStatus && $0.data["status"]?.stringValue == "degraded"
                }?.frame
            }
            let status = try #require(frame ?? nil)
            let services = status.data["services"]?.arrayValue ?? []
            let voice = services.first { $0["name"]?.stringValue == "voice-worker" }
            #expect(voice?["readyInstances"]?.intValue == 0)
            #expect(status.offset != nil)  // numbered like every channel event: recoverable
        }
    }
}
