import Foundation
import SwitchboardContracts

// The payloads of the events BluePlan's stream makes of a run's own frames (seed 001's agent events
// in `AgentEventFields`); a role's events pass through with the seed fields they already carry.

/// agent_start of the supervisor: the run's pattern and its agents.
struct BluePlanRunStart: Codable, Sendable, Equatable {
    /// Always "started".
    var status = "started"
    /// "<pattern>: <role>, <role>…".
    var taskDescription: String
    var pattern: String
    var agents: [String]

    enum CodingKeys: String, CodingKey {
        case status, taskDescription = "task_description", pattern, agents
    }
}

/// agent_complete of the supervisor: the run's result as COLLABORATION_COMPLETE carried it (each field
/// as it came, or its default when the frame had none).
struct BluePlanRunComplete: Codable, Sendable, Equatable {
    var status: JSONValue
    /// The answer.
    var summary: JSONValue
    var failedAgents: JSONValue
    var note: JSONValue
    var durationMs: JSONValue

    enum CodingKeys: String, CodingKey {
        case status, summary, failedAgents = "failed_agents", note, durationMs = "duration_ms"
    }
}
