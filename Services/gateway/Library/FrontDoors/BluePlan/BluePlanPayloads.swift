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

    init(_ start: CollaborationStart) {
        pattern = start.pattern.rawValue
        agents = start.roles
        taskDescription = "\(pattern): \(agents.joined(separator: ", "))"
    }

    enum CodingKeys: String, CodingKey {
        case status, taskDescription = "task_description", pattern, agents
    }
}

/// agent_complete of the supervisor: the run's result as COLLABORATION_COMPLETE carried it.
struct BluePlanRunComplete: Codable, Sendable, Equatable {
    var status: String
    /// The answer.
    var summary: String
    var failedAgents: [String]
    var note: String
    var durationMs: Int

    init(_ complete: CollaborationComplete) {
        status = complete.result.status
        summary = complete.result.answer
        failedAgents = complete.result.failedRoles
        note = complete.result.note
        durationMs = complete.duration
    }

    enum CodingKeys: String, CodingKey {
        case status, summary, failedAgents = "failed_agents", note, durationMs = "duration_ms"
    }
}
