import Foundation
import SwitchboardContracts

/// A gateway asks for a run of a validated workflow (on `Topics.workflowCommands`, keyed by run id).
public struct WorkflowRunRequested: EventPayload, Equatable {
    public static let eventType = "workflow.run.requested"

    public var runId: String
    public var userId: String
    /// The WebSocket session (`/ws/{session_id}`) that started the run.
    public var sessionId: String
    public var workflow: WorkflowDefinition
    /// Values given to the start node, on top of its `config.inputs`.
    public var inputs: [String: JSONValue]

    public init(
        runId: String, userId: String, sessionId: String, workflow: WorkflowDefinition,
        inputs: [String: JSONValue] = [:]
    ) {
        self.runId = runId
        self.userId = userId
        self.sessionId = sessionId
        self.workflow = workflow
        self.inputs = inputs
    }
}

/// pause | resume | stop of a run, applied by the runner that owns it, in the order they were sent.
public struct WorkflowControlRequested: EventPayload, Equatable {
    public static let eventType = "workflow.control.requested"

    public var runId: String
    public var userId: String
    public var action: String
    /// The client's request id, echoed in the answer.
    public var requestId: String

    public init(runId: String, userId: String, action: String, requestId: String) {
        self.runId = runId
        self.userId = userId
        self.action = action
        self.requestId = requestId
    }
}

/// The user's answer to a human_input node.
public struct WorkflowInputProvided: EventPayload, Equatable {
    public static let eventType = "workflow.input.provided"

    public var runId: String
    public var userId: String
    public var nodeId: String
    public var answer: JSONValue
    public var requestId: String

    public init(runId: String, userId: String, nodeId: String, answer: JSONValue, requestId: String) {
        self.runId = runId
        self.userId = userId
        self.nodeId = nodeId
        self.answer = answer
        self.requestId = requestId
    }
}

public enum WorkflowControlAction: String, Sendable, CaseIterable {
    case pause, resume, stop
}

/// Event ids derived from what they say, so an event emitted again by a runner that took a run over
/// is dropped by the notifier's idempotency instead of reaching the client twice.
public enum DeterministicID {
    public static func uuid(_ parts: String...) -> UUID {
        let text = parts.joined(separator: "\u{1F}")
        var first: UInt64 = 0xcbf2_9ce4_8422_2325
        var second: UInt64 = 0x84222325_cbf29ce4
        for byte in text.utf8 {
            first = (first ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
            second = (second ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 &+ 0x9e37_79b9_7f4a_7c15
        }
        var bytes = [UInt8](repeating: 0, count: 16)
        for index in 0..<8 {
            bytes[index] = UInt8(truncatingIfNeeded: first >> (index * 8))
            bytes[8 + index] = UInt8(truncatingIfNeeded: second >> (index * 8))
        }
        bytes[6] = (bytes[6] & 0x0f) | 0x50  // version 5-like: name-based
        bytes[8] = (bytes[8] & 0x3f) | 0x80
        return UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }
}

/// ISO 8601 with milliseconds, the seed's timestamp form.
public enum WorkflowTime {
    public static func iso(_ epochMilliseconds: Int64) -> String { WorkflowNodeTask.timestamp(epochMilliseconds) }
}
