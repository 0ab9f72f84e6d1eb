import Foundation
import SwitchboardContracts
import SwitchboardRuntime

/// The OpenAI-compatible servers this worker may call, and the key each gets: from the worker's own
/// SWITCHBOARD_AGENT_PROVIDERS, never from the task. A task (from a team file, or anything that can
/// write to Kafka) names a base URL; only a listed one is called, and only with the key of the variable
/// its entry names, so no task can send an environment variable of its choice to a server of its choice.
public struct ProviderAllowList: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// Without a trailing slash.
        public var baseURL: String
        /// The environment variable holding its key; nil: no `Authorization` header.
        public var keyVariable: String?
    }

    public private(set) var entries: [Entry] = []

    public init(entries: [Entry] = []) {
        self.entries = entries
    }

    /// `BASE_URL[=KEY_VARIABLE]`, comma-separated, e.g.
    /// `https://api.openai.com/v1=OPENAI_API_KEY,http://127.0.0.1:11434/v1`.
    public init(parsing text: String) throws(ProviderAllowListError) {
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            // The URL's own '=' (a query) is not supported: a base URL has none.
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let base = Self.normalized(parts[0])
            guard let url = URL(string: base), ["http", "https"].contains(url.scheme?.lowercased() ?? ""),
                url.host != nil
            else {
                throw ProviderAllowListError(
                    description: "SWITCHBOARD_AGENT_PROVIDERS: \(parts[0]) is not an http(s) base URL")
            }
            let variable = parts.count == 2 ? parts[1].trimmingCharacters(in: .whitespaces) : nil
            if let variable, variable.isEmpty || !variable.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) {
                throw ProviderAllowListError(
                    description: "SWITCHBOARD_AGENT_PROVIDERS: \(variable) is not an environment variable name")
            }
            entries.append(Entry(baseURL: base, keyVariable: variable))
        }
    }

    /// The entry for a task's base URL, or nil when it is not allowed.
    public func entry(for baseURL: String?) -> Entry? {
        guard let baseURL else { return nil }
        let wanted = Self.normalized(baseURL)
        return entries.first { $0.baseURL == wanted }
    }

    static func normalized(_ url: String) -> String {
        var url = url.trimmingCharacters(in: .whitespaces)
        while url.hasSuffix("/") { url.removeLast() }
        return url
    }
}

public struct ProviderAllowListError: Error, CustomStringConvertible {
    public var description: String
}
