import Foundation
import Synchronization

#if canImport(Glibc)
    @preconcurrency import Glibc
#endif

/// How the CLI shows work in progress on stderr. stdout stays for results, so `--json` output and
/// pipes never see a spinner.
public enum TerminalMode: Sendable, Equatable {
    /// stderr is a terminal: redraw status lines in place, with a spinner.
    case live
    /// stderr is a file or a pipe: a plain line now and then, never control characters.
    case plain
    /// `--json`: nothing at all on stderr but errors.
    case quiet

    public static func forStandardError(json: Bool) -> TerminalMode {
        if json { return .quiet }
        return isatty(STDERR_FILENO) != 0 ? .live : .plain
    }
}

/// One row of a live status view: a busy row gets the spinner, a finished one its mark.
public struct StatusRow: Sendable, Equatable {
    public enum State: Sendable, Equatable { case busy, done, failed }

    public var state: State
    public var text: String

    public init(_ state: State, _ text: String) {
        self.state = state
        self.text = text
    }
}

/// Pure rendering of progress and status lines, so the formats are unit-tested without a terminal or a clock.
public enum ProgressFormat {
    public static let spinnerFrames: [String] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"]

    /// `label [#########...........]  450/1000  45%`; without a total, a count only.
    public static func bar(label: String, completed: Int, total: Int?, width: Int = 24) -> String {
        guard let total, total > 0 else { return "\(label)  \(completed)" }
        let clamped = min(max(completed, 0), total)
        let filled = clamped * width / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let digits = String(total).count
        let count = String(repeating: " ", count: max(0, digits - String(clamped).count)) + String(clamped)
        return "\(label) [\(bar)] \(count)/\(total) \(String(format: "%3d", clamped * 100 / total))%"
    }

    /// A status row as drawn at spinner step `tick`.
    public static func row(_ row: StatusRow, tick: Int) -> String {
        switch row.state {
        case .busy: "\(spinnerFrames[tick % spinnerFrames.count]) \(row.text)"
        case .done: "✓ \(row.text)"
        case .failed: "✗ \(row.text)"
        }
    }
}

/// A plain-text table: columns padded to their widest cell, numbers right-aligned.
public struct TextTable: Sendable {
    public enum Alignment: Sendable { case left, right }

    public var headers: [String]
    public var alignments: [Alignment]
    public var rows: [[String]] = []

    /// Columns are left-aligned unless `alignments` says otherwise.
    public init(headers: [String], alignments: [Alignment]? = nil) {
        self.headers = headers
        self.alignments = alignments ?? Array(repeating: .left, count: headers.count)
    }

    public mutating func append(_ row: [String]) {
        rows.append(row)
    }

    /// The table as lines joined by newlines, without a trailing newline; two spaces between columns,
    /// a dashed rule under the header, no trailing spaces.
    public func render() -> String {
        let columns = max(headers.count, rows.map(\.count).max() ?? 0)
        func cell(_ row: [String], _ column: Int) -> String { column < row.count ? row[column] : "" }
        let widths = (0..<columns).map { column in
            ([headers] + rows).map { cell($0, column).count }.max() ?? 0
        }
        func line(_ row: [String]) -> String {
            let cells = (0..<columns).map { column -> String in
                let text = cell(row, column)
                let padding = String(repeating: " ", count: widths[column] - text.count)
                let alignment = column < alignments.count ? alignments[column] : .left
                return alignment == .right ? padding + text : text + padding
            }
            return String(cells.joined(separator: "  ").reversed().drop(while: { $0 == " " }).reversed())
        }
        let rule = widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")
        return ([line(headers), rule] + rows.map(line)).joined(separator: "\n")
    }
}

/// Writes to stderr unbuffered.
func writeStandardError(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}

/// Status rows on stderr while work runs: redrawn in place with a spinner on a terminal, a plain line
/// when a row changes (at most every `plainInterval`) otherwise, nothing when quiet.
public final class LiveStatus: Sendable {
    private struct State {
        var rows: [StatusRow] = []
        var drawnLines = 0
        var tick = 0
        var lastPlain: ContinuousClock.Instant?
        var lastPlainText: [String] = []
    }

    public let mode: TerminalMode
    private let plainInterval: Duration
    private let state = Mutex(State())

    public init(mode: TerminalMode, plainInterval: Duration = .seconds(3)) {
        self.mode = mode
        self.plainInterval = plainInterval
    }

    /// Replaces the rows; a terminal shows them at the next tick.
    public func update(_ rows: [StatusRow]) {
        let plainLines: [String]? = state.withLock { state in
            state.rows = rows
            guard mode == .plain else { return nil }
            let texts = rows.map(Self.plainLine)
            let now = ContinuousClock.now
            if texts == state.lastPlainText || texts.isEmpty {
                state.lastPlainText = texts
                return nil
            }
            if let last = state.lastPlain, now - last < plainInterval, rows.contains(where: { $0.state == .busy }) {
                return nil
            }
            state.lastPlain = now
            state.lastPlainText = texts
            return texts
        }
        if let plainLines { writeStandardError(plainLines.joined(separator: "\n") + "\n") }
    }

    /// One row: the common case of a single spinner line.
    public func update(_ text: String, state rowState: StatusRow.State = .busy) {
        update([StatusRow(rowState, text)])
    }

    /// Removes the rows from the screen at once, e.g. before other output takes the terminal.
    public func clear() {
        update([])
        guard mode == .live else { return }
        let output = state.withLock { Self.erase(&$0) }
        writeStandardError(output)
    }

    /// Writes a permanent line above the status rows.
    public func log(_ line: String) {
        guard mode != .quiet else { return }
        let output = state.withLock { state in
            mode == .live ? Self.erase(&state) + line + "\n" + Self.draw(&state) : line + "\n"
        }
        writeStandardError(output)
    }

    /// Runs `write` (output on stdout) with the rows taken off the screen meanwhile, so the two do not tear.
    public func interrupt(_ write: () -> Void) {
        guard mode == .live else { return write() }
        let erase = state.withLock { Self.erase(&$0) }
        writeStandardError(erase)
        write()
        fflush(nil)  // every stream: naming `stdout` is not concurrency-safe
        redraw()
    }

    /// Advances the spinner and redraws (live mode only).
    func redraw() {
        guard mode == .live else { return }
        let output = state.withLock { state in
            state.tick += 1
            return Self.erase(&state) + Self.draw(&state)
        }
        writeStandardError(output)
    }

    /// Leaves the final rows on screen (live) or prints them once more if they changed (plain).
    func finish(keepRows: Bool) {
        switch mode {
        case .quiet: return
        case .live:
            let output = state.withLock { state in
                let erased = Self.erase(&state)
                return keepRows ? erased + Self.draw(&state) : erased
            }
            writeStandardError(output)
        case .plain:
            let lines: [String]? = state.withLock { state in
                let texts = state.rows.map(Self.plainLine)
                guard keepRows, texts != state.lastPlainText, !texts.isEmpty else { return nil }
                state.lastPlainText = texts
                return texts
            }
            if let lines { writeStandardError(lines.joined(separator: "\n") + "\n") }
        }
    }

    /// A row in a log file: no spinner glyph, which would be a frozen frame there.
    private static func plainLine(_ row: StatusRow) -> String {
        row.state == .busy ? row.text : ProgressFormat.row(row, tick: 0)
    }

    private static func erase(_ state: inout State) -> String {
        // Up to the first drawn line, clearing each.
        defer { state.drawnLines = 0 }
        return String(repeating: "\u{1B}[1A\u{1B}[2K", count: state.drawnLines) + (state.drawnLines > 0 ? "\r" : "")
    }

    private static func draw(_ state: inout State) -> String {
        state.drawnLines = state.rows.count
        return state.rows.map { ProgressFormat.row($0, tick: state.tick) + "\n" }.joined()
    }

    /// A progress bar drawn in this view's row.
    public func progress(label: String, total: Int?) -> ProgressTracker {
        let tracker = ProgressTracker(label: label, total: total, status: self)
        update(ProgressFormat.bar(label: label, completed: 0, total: total))
        return tracker
    }

    /// Runs `body` with a status view whose spinner turns every 100 ms on a terminal; the last rows stay
    /// on screen when `keepRows` (e.g. `up`'s final state), else they are erased.
    public static func with<T: Sendable>(
        mode: TerminalMode, keepRows: Bool = false, _ body: (LiveStatus) async throws -> T
    ) async throws -> T {
        let status = LiveStatus(mode: mode)
        defer { status.finish(keepRows: keepRows) }
        guard mode == .live else { return try await body(status) }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    status.redraw()
                    try? await Task.sleep(for: .milliseconds(100))
                }
                return nil
            }
            let result = try await body(status)
            group.cancelAll()
            return result
        }
    }
}

/// Counted progress towards a total, shown as a bar on a terminal; a plain line every few seconds otherwise.
public final class ProgressTracker: Sendable {
    private let completed = Atomic<Int>(0)
    private let total: Int?
    private let label: String
    private let status: LiveStatus

    init(label: String, total: Int?, status: LiveStatus) {
        self.label = label
        self.total = total
        self.status = status
    }

    public func advance(by count: Int = 1) {
        let now = completed.add(count, ordering: .relaxed).newValue
        status.update(ProgressFormat.bar(label: label, completed: now, total: total))
    }
}
