import Foundation
import SwitchboardContracts

/// A team of AI roles and how they work together, read from a JSON file (docs/agents.md); seed 000's
/// chat-centre team is compiled in for when no file is given.
public struct Team: Codable, Sendable, Hashable {
    public struct Role: Codable, Sendable, Hashable {
        public var name: String
        public var responsibility: String
        public var systemPrompt: String
        /// Words that make a message (or an intermediate result) this role's business; used to pick
        /// specialists for the hierarchical and dynamic patterns.
        public var keywords: [String]
        /// Announced as ROLE_THINKING_START's estimatedTime.
        public var estimatedMs: Int
        public var provider: ProviderSpec

        public init(
            name: String, responsibility: String, systemPrompt: String, keywords: [String] = [],
            estimatedMs: Int = 1500,
            provider: ProviderSpec = .offline
        ) {
            self.name = name
            self.responsibility = responsibility
            self.systemPrompt = systemPrompt
            self.keywords = keywords
            self.estimatedMs = estimatedMs
            self.provider = provider
        }
    }

    public var name: String
    public var roles: [Role]
    /// Answers alone when the message is simple (the `direct` pattern).
    public var directRole: String
    /// The sequential pattern's order.
    public var sequence: [String]
    /// Who works first, concurrently, in the parallel pattern; the pool the hierarchical and dynamic
    /// patterns choose from.
    public var specialists: [String]
    /// Weighs the specialists' results and decides.
    public var synthesizer: String
    /// Writes the reply the user gets.
    public var finalRole: String
    /// Earlier messages of the conversation given to the roles (at most 50).
    public var historyLimit: Int

    public init(
        name: String, roles: [Role], directRole: String, sequence: [String], specialists: [String], synthesizer: String,
        finalRole: String, historyLimit: Int = 50
    ) {
        self.name = name
        self.roles = roles
        self.directRole = directRole
        self.sequence = sequence
        self.specialists = specialists
        self.synthesizer = synthesizer
        self.finalRole = finalRole
        self.historyLimit = historyLimit
    }

    public func role(_ name: String) -> Role? { roles.first { $0.name == name } }

    public struct ValidationError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Every name a pattern uses is a role, names are unique, providers are complete.
    public func validate() throws {
        func fail(_ message: String) -> ValidationError { ValidationError(description: "team \(name): \(message)") }
        guard !roles.isEmpty else { throw fail("has no roles") }
        guard Set(roles.map(\.name)).count == roles.count else { throw fail("role names must be unique") }
        let names = Set(roles.map(\.name))
        for used in [directRole, synthesizer, finalRole] + sequence + specialists where !names.contains(used) {
            throw fail("\(used) is used by a pattern but is not a role")
        }
        guard !sequence.isEmpty, !specialists.isEmpty else { throw fail("sequence and specialists must not be empty") }
        guard (1...50).contains(historyLimit) else { throw fail("historyLimit must be 1…50") }
        for role in roles {
            guard ProviderSpec.kinds.contains(role.provider.kind) else {
                throw fail("\(role.name): unknown provider kind \(role.provider.kind) (offline or openai)")
            }
            if role.provider.engine == .openai {
                guard let base = role.provider.baseURL, URL(string: base)?.scheme?.hasPrefix("http") == true,
                    role.provider.model?.isEmpty == false
                else { throw fail("\(role.name): an openai provider needs baseURL (http or https) and model") }
            }
        }
    }

    /// Reads and validates a team file.
    public static func load(path: String) throws -> Team {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ValidationError(description: "cannot read the team file \(path): \(error)")
        }
        let team: Team
        do {
            team = try JSONDecoder().decode(Team.self, from: data)
        } catch {
            throw ValidationError(description: "the team file \(path) is not a valid team: \(error)")
        }
        try team.validate()
        return team
    }

    /// Seed 000's chat centre: six roles, all on the offline engine.
    public static let chatCentre = Team(
        name: "chat-centre",
        roles: [
            Role(
                name: "Alex", responsibility: "requirements analyst",
                systemPrompt:
                    "You are Alex, the team's requirements analyst. Say what the user really asks for: goals, constraints, open questions. Be brief and concrete.",
                keywords: ["plan", "goal", "need", "want", "requirement", "scope", "project", "需求", "目标", "计划"],
                estimatedMs: 1200),
            Role(
                name: "Kulu", responsibility: "researcher",
                systemPrompt:
                    "You are Kulu, the team's researcher. Bring the facts, data and background the question needs, and say how sure you are.",
                keywords: ["research", "data", "fact", "market", "source", "compare", "history", "研究", "数据", "市场"],
                estimatedMs: 1500),
            Role(
                name: "Mike", responsibility: "engineer",
                systemPrompt:
                    "You are Mike, the team's engineer. Judge technical feasibility and sketch how to build it: architecture, effort, pitfalls.",
                keywords: [
                    "build", "code", "system", "architecture", "api", "performance", "technical", "技术", "架构", "代码",
                ], estimatedMs: 1500),
            Role(
                name: "Emma", responsibility: "designer",
                systemPrompt:
                    "You are Emma, the team's designer. Look at it from the user's side: experience, clarity, what people will feel and do.",
                keywords: ["design", "user", "experience", "ui", "creative", "brand", "feel", "设计", "用户", "体验"],
                estimatedMs: 1200),
            Role(
                name: "David", responsibility: "decision maker",
                systemPrompt:
                    "You are David, the team's decision maker. Weigh your colleagues' contributions, resolve conflicts, decide, and name the risks.",
                keywords: ["decide", "decision", "risk", "strategy", "priority", "budget", "should", "决策", "风险", "策略"],
                estimatedMs: 1000),
            Role(
                name: "Catherine", responsibility: "communicator",
                systemPrompt:
                    "You are Catherine, the team's communicator. Write the final answer to the user from the team's work: clear, complete, friendly, in the user's language.",
                keywords: ["write", "explain", "summary", "summarize", "总结", "解释"], estimatedMs: 800),
        ],
        directRole: "Alex",
        sequence: ["Alex", "Kulu", "Mike", "David", "Catherine"],
        specialists: ["Alex", "Kulu", "Mike", "Emma"],
        synthesizer: "David",
        finalRole: "Catherine")
}
