import Metrics
import SwitchboardContracts

/// The notifier's metric handles, each label written once and each handle made once: this runs for
/// every client event (docs/configuration.md lists them).
enum NotifierMetrics {
    static let published = Dictionary(
        uniqueKeysWithValues: Channel.Kind.allCases.map {
            ($0, Counter(label: "sb_notifier_published_total", dimensions: [("channel_kind", $0.rawValue)]))
        })
    /// Event creation → published to Redis.
    static let eventAge = Timer(label: "sb_notifier_event_age_seconds")
    static let duplicates = Counter(label: "sb_notifier_duplicates_total")
    /// Messages and sessions written to PostgreSQL (`HistoryRecorder`).
    static let historyRowsWritten = Counter(label: "sb_history_rows_written_total")
}
