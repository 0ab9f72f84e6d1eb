import Foundation
import Logging
import Synchronization

/// One JSON object per line on standard error: time, level, service, instance, message and metadata.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let service: String
    private let instance: String

    public init(label: String, service: String, instance: String) {
        self.label = label
        self.service = service
        self.instance = instance
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        var object: [String: Any] = [
            "time": Self.timestamp(),
            "level": event.level.rawValue,
            "service": service,
            "instance": instance,
            "logger": label,
            "message": "\(event.message)",
        ]
        for (key, value) in merged { object[key] = Self.plain(value) }
        if event.level >= .warning { object["source"] = "\(event.file):\(event.line)" }
        guard
            var line = try? JSONSerialization.data(
                withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return }
        line.append(0x0A)
        // One write(2) per line, under a lock, so lines from many threads never interleave.
        Self.output.withLock { _ in
            line.withUnsafeBytes { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
        }
    }

    private static let output = Mutex(())

    private static func plain(_ value: Logger.MetadataValue) -> Any {
        switch value {
        case .string(let string): return string
        case .stringConvertible(let convertible): return convertible.description
        case .array(let array): return array.map(plain)
        case .dictionary(let dictionary): return dictionary.mapValues(plain)
        }
    }

    private static let timeStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    private static func timestamp() -> String { Date().formatted(timeStyle) }
}

public enum LogSetup {
    private static let bootstrapped = Mutex(false)

    /// Installs the process-wide log handler once; later calls are ignored (tests run many services).
    public static func bootstrap(_ configuration: SwitchboardConfiguration) {
        let first = bootstrapped.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { return }
        let level = Logger.Level(rawValue: configuration.logLevel) ?? .info
        let service = configuration.service.rawValue
        let instance = configuration.instanceID
        let json = configuration.logFormat == "json"
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler =
                json
                ? JSONLogHandler(label: label, service: service, instance: instance)
                : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
