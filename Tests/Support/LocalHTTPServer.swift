import Hummingbird
import Logging
import ServiceLifecycle

/// A test's HTTP server (a fake provider, a collector) on a free loopback port, for the duration of `body`.
public enum LocalHTTPServer {
    public static func withServer<T: Sendable>(
        router: Router<BasicRequestContext>, label: String, _ body: @escaping @Sendable (Int) async throws -> T
    ) async throws -> T {
        let port = Locked<Int?>(nil)
        var logger = Logger(label: label)
        logger.logLevel = .warning
        let application = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port } }, logger: logger)
        let group = ServiceGroup(services: [application], logger: logger)
        return try await withThrowingTaskGroup(of: T?.self) { tasks in
            tasks.addTask {
                try await group.run()
                return nil
            }
            tasks.addTask {
                do {
                    while port.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(10)) }
                    let result = try await body(port.withLock { $0 }!)
                    await group.triggerGracefulShutdown()
                    return result
                } catch {
                    await group.triggerGracefulShutdown()
                    throw error
                }
            }
            var result: T?
            for try await value in tasks where value != nil { result = value }
            return result!
        }
    }
}
