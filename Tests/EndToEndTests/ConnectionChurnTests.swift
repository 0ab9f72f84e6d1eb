import Foundation
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// Connections opened and closed in rounds must give their memory back: a gateway that keeps
/// something of every closed connection grows without bound under ordinary reconnect traffic.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct ConnectionChurnTests {
    static let rounds = 6
    static let connectionsPerRound = 800

    @Test func theGatewaysMemoryComesBackAfterEveryRoundOfConnections() async throws {
        try await ServiceProcesses.withStack { stack, url, authority in
            let gateway = try #require(stack.process(named: "gateway"))
            let port = try #require(URL(string: url)?.port)
            var tokens: [String] = []
            for user in 0..<100 { tokens.append(try await authority.mint(user: "churn-\(user)")) }
            var residentAfterRound: [Int] = []
            for _ in 0..<Self.rounds {
                var sockets: [StalledWebSocket] = []
                for index in 0..<Self.connectionsPerRound {
                    sockets.append(try StalledWebSocket(port: port, token: tokens[index % tokens.count]))
                }
                // Give each connection time to be admitted (routing table, feeds) before it goes.
                try await Task.sleep(for: .milliseconds(500))
                sockets.removeAll()
                try await Task.sleep(for: .seconds(2))
                residentAfterRound.append(try Self.residentBytes(of: gateway.processIdentifier))
            }
            let growth = residentAfterRound.last! - residentAfterRound.first!
            // A leak of even 5 KB per closed connection would add 16 MB over these rounds.
            #expect(
                growth < 16 << 20,
                "RSS after each round (MiB): \(residentAfterRound.map { $0 >> 20 }); grew \(growth >> 10) KiB")
        }
    }

    static func residentBytes(of pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        let kilobytes = try #require(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
        return kilobytes * 1024
    }
}
