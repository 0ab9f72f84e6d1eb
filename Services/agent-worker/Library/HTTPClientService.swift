import AsyncHTTPClient
import Foundation
import ServiceLifecycle
import SwitchboardContracts
import SwitchboardRuntime

/// Shuts the HTTP client down at the end.
struct HTTPClientService: Service {
    let client: HTTPClient

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}
