import PostgresNIO
// PostgresClient throws the pool's errors as they are; the module is part of the PostgresNIO package.
import _ConnectionPoolModule
import SwitchboardKafka

extension PSQLError: RetryClassifiedError {
    /// A PostgreSQL that cannot be reached, is shutting down or starting up is waited for; any other
    /// server error is the statement's own (and so the message's).
    public var failureKind: FailureKind {
        switch code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed:
            return .dependencyUnavailable
        case .server:
            guard let state = serverInfo?[.sqlState] else { return .transient }
            // 08: connection exception; 57P0x: admin/crash shutdown, cannot connect now; 53: out of resources.
            if state.hasPrefix("08") || state.hasPrefix("57P0") || state.hasPrefix("53") {
                return .dependencyUnavailable
            }
            return .transient
        default:
            return .transient
        }
    }
}

extension ConnectionPoolError: RetryClassifiedError {
    /// The pool's own refusals: it could not open a connection for a while (PostgreSQL down), or it is
    /// shutting down (the processor gives the message back when it is stopping).
    public var failureKind: FailureKind {
        self == .requestCancelled ? .transient : .dependencyUnavailable
    }
}
