import AsyncHTTPClient
import Foundation
import NIOCore
import SwitchboardContracts
import SwitchboardRuntime

/// The provider each task names: the offline engine, or an OpenAI-compatible server of the worker's
/// allow-list behind retries and a circuit breaker. API keys come from this process's environment, by
/// the name the allow-list gives (a task's `apiKeyEnv` is not read).
struct Providers: Sendable {
    let offline: OfflineProvider
    let client: HTTPClient
    let breakers: CircuitBreakers
    let allowList: ProviderAllowList
    /// Voice devices' MCP tools (DeviceTools.swift).
    let deviceTools: DeviceToolCaller
    var environment: [String: String] = ProcessInfo.processInfo.environment

    /// Connect within 5 s; a silent stream fails after 60 s. Failed connections are not retried by the
    /// client itself: ResilientProvider retries with its own backoff and feeds the circuit breaker.
    static var httpConfiguration: HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(5), read: .seconds(60)))
        configuration.connectionPool.retryConnectionEstablishment = false
        return configuration
    }

    func provider(for spec: ProviderSpec?) -> any ChatProvider {
        guard let spec, spec.engine == .openai else { return offline }
        guard let allowed = allowList.entry(for: spec.baseURL) else {
            return RefusedProvider(baseURL: spec.baseURL ?? "(none)")
        }
        let key = allowed.keyVariable.flatMap { environment[$0] }
        return ResilientProvider(
            base: OpenAIProvider(spec: spec, apiKey: key, client: client), breakerKey: spec.breakerKey,
            breakers: breakers)
    }
}
