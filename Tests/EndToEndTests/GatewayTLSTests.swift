import Foundation
import SwitchboardRuntime
import SwitchboardTestSupport
import Testing

/// Issue 14 item 4: the gateway's own TLS, tried with a user's ordinary HTTPS and WSS clients that
/// trust a private CA (Tests/SeedClients/tls_client.py).
@Suite(.serialized, .timeLimit(.minutes(3)))
struct GatewayTLSTests {
    @Test func httpsAndWSSWorkAndOTAHandsOutWSS() async throws {
        let folder = NSTemporaryDirectory() + "gateway-tls-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try await TestCertificates.make(in: folder)
        try await ServiceProcesses.withStack(gatewayEnvironment: [
            "SWITCHBOARD_GATEWAY_TLS_CERT_FILE": "\(folder)/server.pem",
            "SWITCHBOARD_GATEWAY_TLS_KEY_FILE": "\(folder)/server.key",
        ]) { _, url, authority in
            let port = try #require(URL(string: url)?.port)
            let token = try await authority.mint(user: "tls-\(UUID().uuidString.prefix(6))")
            let result = try await SeedClientTests.run(
                "tls_client.py",
                arguments: ["--base", "https://localhost:\(port)", "--ca", "\(folder)/ca.pem", "--token", token])
            #expect(result.status == 0, "\(result.output.suffix(3000))")
            #expect(
                SeedClientTests.checks(in: result.output) == ["https", "unknown-ca-refused", "ota-wss", "wss-stream"])
            // Clear text on the TLS port gets no answer.
            #expect(await ServiceProcesses.httpStatus("http://127.0.0.1:\(port)/healthz") != 200)
        }
    }
}
