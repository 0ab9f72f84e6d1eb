import Foundation
import SwitchboardTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A service that cannot start must say so and exit, not linger: an orchestrator or a test that
/// reads "ready" from whatever answers on that port would otherwise talk to the wrong process. And
/// its short life must not break the consumer groups it was joining.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct StartupTests {
    @Test func everyServiceWhosePortIsTakenExitsWithTheError() async throws {
        try await TestEnvironment.requireKafka()
        try await TestEnvironment.requireRedis()
        let taken = try ListeningSocket()
        defer { taken.close() }
        let stack = try ServiceProcesses()
        let names = ["gateway", "orchestrator", "agent-worker", "notifier", "voice-worker", "workflow-runner"]
        for name in names {
            try stack.start(name, environment: ["SWITCHBOARD_HTTP_PORT": String(taken.port)])
        }
        for name in names {
            let process = try #require(stack.process(named: name))
            let exited = await eventually(timeout: .seconds(60), every: .milliseconds(100)) { !process.isRunning }
            #expect(exited, "\(name) still runs with its port taken; log:\n\(stack.log(of: name).suffix(1500))")
            guard exited else { continue }
            #expect(process.terminationStatus != 0, "\(name) exited 0")
            #expect(stack.log(of: name).contains("Address already in use"), "\(name) does not say why it stopped")
        }
        await stack.stopAll()
        // They stopped while joining their consumer groups: the groups must still take new members
        // (the next stack becomes ready only once each of its consumers was assigned partitions).
        try await ServiceProcesses.withStack { _, _, _ in }
    }
}

/// A loopback TCP socket listening on a free port, held until closed.
private struct ListeningSocket {
    let descriptor: Int32
    let port: Int

    init() throws {
        struct SocketError: Error { var call: String }
        port = ServiceProcesses.freePort()
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw SocketError(call: "bind") }
        guard listen(descriptor, 16) == 0 else { throw SocketError(call: "listen") }
    }

    func close() { _ = Glibc.close(descriptor) }
}
