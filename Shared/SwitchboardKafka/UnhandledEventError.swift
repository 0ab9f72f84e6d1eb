/// An event type this service version does not handle: dead-lettered at once, never silently committed,
/// so it can be replayed by a version that does.
public struct UnhandledEventError: RetryClassifiedError, CustomStringConvertible {
    public var type: String
    public var service: String

    public init(type: String, service: String) {
        self.type = type
        self.service = service
    }

    public var failureKind: FailureKind { .poison }
    public var description: String { "\(service) does not handle events of type \(type)" }
}
