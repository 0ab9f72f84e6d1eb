import Foundation

/// A client frame's payload: its fields as a type, and the frame type it travels as. Encoded to the
/// frame's `data` with the same field names and JSON types the frames had when they were built by hand.
public protocol FramePayload: Codable, Sendable {
    static var frameType: String { get }
}

extension FramePayload {
    public var frameType: String { Self.frameType }

    /// The payload as a frame's `data`.
    public func data() throws -> JSONValue {
        try JSONValueEncoder().encode(self)
    }
}

extension ClientEvent {
    public init(channel: Channel, payload: some FramePayload, ephemeral: Bool = false) throws {
        self.init(channel: channel, frameType: payload.frameType, data: try payload.data(), ephemeral: ephemeral)
    }
}

/// ROLE_STATUS_CHANGE: one legal step of a role's state machine.
public struct RoleStatusChange: FramePayload, Equatable {
    public static let frameType = FrameType.roleStatusChange
    public var conversationId: String
    public var role: String
    public var status: String
    public var previousStatus: String
    public var reason: String

    public init(conversationId: String, role: String, status: String, previousStatus: String, reason: String) {
        self.conversationId = conversationId
        self.role = role
        self.status = status
        self.previousStatus = previousStatus
        self.reason = reason
    }
}

/// ROLE_THINKING_START: the role entered THINKING; `estimatedTime` in milliseconds.
public struct RoleThinkingStart: FramePayload, Equatable {
    public static let frameType = FrameType.roleThinkingStart
    public var conversationId: String
    public var role: String
    public var estimatedTime: Int64

    public init(conversationId: String, role: String, estimatedTime: Int64) {
        self.conversationId = conversationId
        self.role = role
        self.estimatedTime = estimatedTime
    }
}

/// ROLE_THINKING_END: the role left THINKING; `actualTime` in milliseconds.
public struct RoleThinkingEnd: FramePayload, Equatable {
    public static let frameType = FrameType.roleThinkingEnd
    public var conversationId: String
    public var role: String
    public var actualTime: Int64

    public init(conversationId: String, role: String, actualTime: Int64) {
        self.conversationId = conversationId
        self.role = role
        self.actualTime = actualTime
    }
}
