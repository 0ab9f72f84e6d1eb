import Foundation
import NIOSSL
import PostgresNIO

/// Where the history database is, parsed from a `postgres://user:password@host:port/database` URL
/// (`SWITCHBOARD_POSTGRES_URL`).
public struct StoreConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    /// Connections the pool may open; each service keeps this small.
    public var maximumConnections: Int
    /// A schema other than `public` (tests and benchmarks isolate themselves this way).
    public var schema: String?
    /// `sslmode` of the URL, as libpq reads it.
    public var sslMode: SSLMode = .disable

    /// libpq's `sslmode` values Switchboard honours. `prefer` tries TLS and falls back to clear text;
    /// `require` refuses a server without TLS; `verify-full` also checks the certificate and host name
    /// against the system's trust roots.
    public enum SSLMode: String, Sendable, Equatable, CaseIterable {
        case disable, prefer, require
        case verifyFull = "verify-full"
    }

    public init(
        host: String = "127.0.0.1", port: Int = 5432, username: String = "switchboard",
        password: String? = nil, database: String = "switchboard", maximumConnections: Int = 8
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.maximumConnections = maximumConnections
    }

    /// Parses `postgres://` or `postgresql://` URLs; anything else is a clear error.
    public init(url: String, maximumConnections: Int = 8) throws(StoreError) {
        guard let components = URLComponents(string: url),
            let scheme = components.scheme, scheme == "postgres" || scheme == "postgresql",
            let host = components.host, !host.isEmpty
        else {
            throw StoreError(.invalidConfiguration, "not a postgres:// URL: \(url)")
        }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        var sslMode = SSLMode.disable
        if let value = components.queryItems?.first(where: { $0.name == "sslmode" })?.value {
            guard let mode = SSLMode(rawValue: value) else {
                throw StoreError(
                    .invalidConfiguration,
                    "sslmode=\(value) is not supported (\(SSLMode.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            sslMode = mode
        }
        self.init(
            host: host, port: components.port ?? 5432,
            username: components.user?.removingPercentEncoding ?? "postgres",
            password: components.password?.removingPercentEncoding,
            database: database.isEmpty ? (components.user ?? "postgres") : database,
            maximumConnections: maximumConnections)
        self.sslMode = sslMode
    }

    /// Rendered to postgres-nio's form in this one place. Local servers run without TLS (the default).
    var clientConfiguration: PostgresClient.Configuration {
        let tls: PostgresClient.Configuration.TLS
        switch sslMode {
        case .disable: tls = .disable
        case .prefer, .require:
            // libpq's prefer and require encrypt without checking the certificate.
            var unverified = TLSConfiguration.makeClientConfiguration()
            unverified.certificateVerification = .none
            tls = sslMode == .prefer ? .prefer(unverified) : .require(unverified)
        case .verifyFull: tls = .require(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database, tls: tls)
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = .seconds(5)
        if let schema { configuration.options.additionalStartupParameters = [("search_path", schema)] }
        return configuration
    }
}

/// A store failure. Extensible: new codes never break callers that switch on `code`.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: Hashable, Sendable {
            case invalidConfiguration, migrationFailed, notFound, forbidden, invalidArgument, database
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }
        public static let invalidConfiguration = Code(.invalidConfiguration)
        public static let migrationFailed = Code(.migrationFailed)
        public static let notFound = Code(.notFound)
        public static let forbidden = Code(.forbidden)
        public static let invalidArgument = Code(.invalidArgument)
        public static let database = Code(.database)
        public var description: String { "\(value)" }
    }

    public let code: Code
    public let message: String
    public let file: String
    public let line: Int

    public init(_ code: Code, _ message: String, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
    }

    public var description: String { "StoreError(\(code)): \(message) [\(file):\(line)]" }
}
