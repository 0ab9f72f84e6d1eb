import ArgumentParser
import Foundation
import Synchronization

#if canImport(Glibc)
    @preconcurrency import Glibc
#endif

/// A scenario's results: the lines it reports (the human form, as before), its latency summaries, and
/// how long it ran. Printed as a summary table, or as one JSON document with `--json`.
public struct BenchResults: Sendable, Codable, Equatable {
    public var scenario: String
    public var lines: [String] = []
    public var latencies: [LatencySummary] = []
    public var seconds: Double = 0

    public init(scenario: String) {
        self.scenario = scenario
    }

    /// The latencies as a table, milliseconds right-aligned.
    public func summaryTable() -> String {
        var table = TextTable(
            headers: ["LATENCY", "N", "P50 MS", "P90 MS", "P99 MS", "MAX MS"],
            alignments: [.left, .right, .right, .right, .right, .right])
        for summary in latencies {
            table.append(
                [summary.name, String(summary.count)]
                    + [summary.p50, summary.p90, summary.p99, summary.max].map { String(format: "%.2f", $0) })
        }
        return table.render()
    }
}

/// The hook every scenario reports through, found as a task-local so the scenarios' measuring
/// functions (and the tasks they start) report without a parameter threaded through them. Outside
/// `BenchOutput.run` (e.g. a test calling a scenario's `measure`), lines print and the rest is dropped.
public final class BenchReporter: Sendable {
    @TaskLocal public static var current: BenchReporter?

    private let results: Mutex<BenchResults>
    private let progress = Mutex<ProgressTracker?>(nil)
    private let status: LiveStatus

    init(scenario: String, status: LiveStatus) {
        results = Mutex(BenchResults(scenario: scenario))
        self.status = status
    }

    /// A line of the scenario's report (printed at once, unless `--json`).
    public static func say(_ line: String) {
        guard let reporter = current else { return print(line) }
        reporter.results.withLock { $0.lines.append(line) }
        guard reporter.status.mode != .quiet else { return }
        reporter.status.interrupt { print(line) }
    }

    /// A latency result, for the summary table (and its line, as scenarios always printed it).
    public static func record(_ summary: LatencySummary) {
        guard let reporter = current else { return print(summary) }
        reporter.results.withLock { $0.latencies.append(summary) }
        say(summary.description)
    }

    /// Starts a progress bar of `total` steps (nil: a counter) under `label`.
    public static func begin(_ label: String, total: Int?) {
        guard let reporter = current else { return }
        let tracker = reporter.status.progress(label: label, total: total)
        reporter.progress.withLock { $0 = tracker }
    }

    /// One step (or `count`) of the current progress bar.
    public static func step(_ count: Int = 1) {
        current?.progress.withLock { $0 }?.advance(by: count)
    }

    /// A phase without steps, shown with the spinner.
    public static func phase(_ text: String) {
        guard let reporter = current else { return }
        reporter.progress.withLock { $0 = nil }
        reporter.status.update(text)
    }

    fileprivate var snapshot: BenchResults { results.withLock { $0 } }
}

/// A `switchboard bench` scenario: its measurement is `report()`, which `run()` wraps with progress,
/// the summary table and `--json`.
protocol BenchScenario: AsyncParsableCommand {
    var output: BenchOutput { get }
    func report() async throws
}

extension BenchScenario {
    func run() async throws {
        try await output.run(scenario: Self.configuration.commandName ?? "bench") { try await report() }
    }
}

/// `--json` for every scenario, and the wrapper that runs one with progress and a summary.
struct BenchOutput: ParsableArguments {
    @Flag(help: "Print the results as one JSON document instead of lines and a table.") var json = false

    func run(scenario: String, _ body: () async throws -> Void) async throws {
        let started = ContinuousClock.now
        var results = try await LiveStatus.with(mode: .forStandardError(json: json)) { status in
            let reporter = BenchReporter(scenario: scenario, status: status)
            status.update("\(scenario): starting…")
            try await BenchReporter.$current.withValue(reporter) { try await body() }
            return reporter.snapshot
        }
        let elapsed = ContinuousClock.now - started
        results.seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        if json {
            print(try JSONLines.encode(results))
        } else if !results.latencies.isEmpty {
            print("\n\(scenario) summary (\(String(format: "%.1f", results.seconds)) s)\n\(results.summaryTable())")
        }
    }
}
