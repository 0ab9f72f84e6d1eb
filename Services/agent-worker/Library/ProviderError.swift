import Foundation
import SwitchboardContracts
import SwitchboardRuntime

public struct ProviderError: Error, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String {
            case http, connect, disconnected, timeout, streamError, malformed, circuitOpen, notAllowed
        }
        private let value: Value
        /// The server answered with an error status.
        public static let http = Code(value: .http)
        /// No connection could be made.
        public static let connect = Code(value: .connect)
        /// The stream ended before `[DONE]`.
        public static let disconnected = Code(value: .disconnected)
        public static let timeout = Code(value: .timeout)
        /// The server sent an error object inside the stream.
        public static let streamError = Code(value: .streamError)
        public static let malformed = Code(value: .malformed)
        /// Too many recent failures: the provider is not called for a while.
        public static let circuitOpen = Code(value: .circuitOpen)
        /// The task names a provider this worker's allow-list does not have (`ProviderAllowList`).
        public static let notAllowed = Code(value: .notAllowed)
        public var description: String { value.rawValue }
    }

    public var code: Code
    public var message: String
    public var status: Int?
    /// Retries made before this error was final (set by `ResilientProvider`).
    public var retries = 0
    public var file: String
    public var line: Int

    public init(_ code: Code, _ message: String, status: Int? = nil, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.status = status
        self.file = file
        self.line = line
    }

    /// 429, 5xx, connection failures, timeouts and cut streams may succeed on another try.
    public var isRetryable: Bool {
        switch code {
        case .http: return status == 429 || (status ?? 0) >= 500
        case .connect, .disconnected, .timeout: return true
        default: return false
        }
    }

    public var description: String {
        "\(code)\(status.map { " \($0)" } ?? ""): \(message)"
    }
}

extension ProviderError: Equatable {
    /// The same failure: where it was raised does not count.
    public static func == (lhs: ProviderError, rhs: ProviderError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.status == rhs.status && lhs.retries == rhs.retries
    }
}
