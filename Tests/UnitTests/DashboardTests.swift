import Foundation
import Testing

/// The Grafana dashboard in deploy/grafana queries only metrics the services export, under the names
/// they export them by (a renamed metric must not leave an empty panel behind).
struct DashboardTests {
    @Test func everyMetricTheDashboardQueriesIsExportedByAService() throws {
        let root = TeamTests.repositoryRoot
        let dashboard = try String(
            contentsOf: root.appendingPathComponent("deploy/grafana/switchboard-dashboard.json"), encoding: .utf8)
        _ = try JSONSerialization.jsonObject(with: Data(dashboard.utf8))
        let queried = Set(
            dashboard.matches(of: /sb_[a-z_]+/).map { match in
                // Histograms (swift-metrics timers) are queried by their series.
                String(match.output).replacing(/_(bucket|sum|count)$/, with: "")
            })
        #expect(queried.count > 20)

        var exported = Set<String>()
        for folder in ["Services", "Shared"] {
            let files = FileManager.default.enumerator(atPath: root.appendingPathComponent(folder).path)
            while let file = files?.nextObject() as? String {
                guard file.hasSuffix(".swift") else { continue }
                let source = try String(
                    contentsOf: root.appendingPathComponent(folder).appendingPathComponent(file), encoding: .utf8)
                exported.formUnion(source.matches(of: /label: "(sb_[a-z_]+)"/).map { String($0.output.1) })
            }
        }
        #expect(queried.subtracting(exported).isEmpty, "queried but not exported: \(queried.subtracting(exported))")
    }
}
