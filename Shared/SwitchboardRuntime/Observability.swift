import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import Synchronization

/// The process-wide Prometheus registry behind swift-metrics.
public enum MetricsSetup {
    private static let registry = Mutex<PrometheusCollectorRegistry?>(nil)

    /// Bootstraps swift-metrics once and returns the registry `/metrics` renders.
    public static func bootstrap() -> PrometheusCollectorRegistry {
        registry.withLock { registry in
            if let registry { return registry }
            let created = PrometheusCollectorRegistry()
            var factory = PrometheusMetricsFactory(registry: created)
            factory.defaultDurationHistogramBuckets = [
                .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10),
                .milliseconds(20), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                .seconds(1), .seconds(5),
            ]
            MetricsSystem.bootstrap(factory)
            registry = created
            return created
        }
    }
}

/// Named checks that must all pass before `/readyz` says ready.
public final class Readiness: Sendable {
    public typealias Check = @Sendable () async -> Bool
    private let checks = Mutex<[(String, Check)]>([])
    private let draining = Atomic<Bool>(false)

    public init() {}

    public func add(_ name: String, _ check: @escaping Check) {
        checks.withLock { $0.append((name, check)) }
    }

    /// Once shutdown starts the instance reports not ready, so load balancers stop sending to it.
    public func startDraining() { draining.store(true, ordering: .relaxed) }

    public func evaluate() async -> (ready: Bool, results: [String: Bool]) {
        var results: [String: Bool] = [:]
        for (name, check) in checks.withLock({ $0 }) { results[name] = await check() }
        let isDraining = draining.load(ordering: .relaxed)
        results["accepting"] = !isDraining
        return (!isDraining && results.values.allSatisfy { $0 }, results)
    }
}

extension Router {
    /// `/healthz`: the process answers. On the public port (load balancers) and the admin port.
    public func addHealthRoute(service: String) {
        get("/healthz") { _, _ -> Response in
            Self.json(.ok, ["status": "ok", "service": service])
        }
    }

    /// The admin port's routes: `/healthz`, `/readyz` (its dependencies answer) and `/metrics`. Kept off
    /// the public port: readiness names internal checks and metrics name internal figures.
    public func addAdminRoutes(readiness: Readiness, registry: PrometheusCollectorRegistry, service: String) {
        addHealthRoute(service: service)
        get("/readyz") { _, _ -> Response in
            let (ready, results) = await readiness.evaluate()
            var body: [String: Any] = ["status": ready ? "ready" : "not ready", "service": service]
            body["checks"] = results
            return Self.json(ready ? .ok : .serviceUnavailable, body)
        }
        get("/metrics") { _, _ -> Response in
            var buffer: [UInt8] = []
            buffer.reserveCapacity(16 * 1024)
            registry.emit(into: &buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
    }

    static func json(_ status: HTTPResponse.Status, _ object: [String: Any]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
