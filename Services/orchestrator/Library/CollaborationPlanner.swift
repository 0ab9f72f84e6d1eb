import Foundation
import SwitchboardContracts

/// Chooses how a team works on a message: the pattern (from the user, else from intent and size) and
/// which roles run in which stage. Pure, so every decision is unit-tested.
public struct CollaborationPlanner: Sendable {
    public let team: Team
    /// The dynamic pattern consults at least this many and at most `maxDynamicSpecialists` specialists.
    public var minDynamicSpecialists = 2
    public var maxDynamicSpecialists = 3

    public init(team: Team) {
        self.team = team
    }

    /// The pattern the user asked for if it is one, else a guess from keywords and length: short
    /// messages get one role; comparisons the parallel team; decisions the hierarchy; plans the
    /// sequence; anything else the dynamic pattern.
    public func pattern(for content: String, requested: String?) -> (pattern: CollaborationPattern, reason: String) {
        if let requested, let pattern = CollaborationPattern(rawValue: requested.lowercased()) {
            return (pattern, "requested")
        }
        let text = " " + content.lowercased() + " "
        func mentions(_ words: [String]) -> Bool { words.contains { text.contains($0) } }
        if mentions(["compare", "versus", " vs ", "pros and cons", "options", "alternatives", "对比", "比较"]) {
            return (.parallel, "intent: comparison")
        }
        if mentions(["decide", "decision", "should i ", "should we ", "决策", "决定"]) {
            return (.hierarchical, "intent: decision")
        }
        if mentions(["plan ", "plan.", "roadmap", "step by step", "project", "规划", "计划"]) {
            return (.sequential, "intent: planning")
        }
        let size = Self.size(of: content)
        if size <= 12 { return (.direct, "complexity: simple") }
        return (.dynamic, "complexity: open question")
    }

    /// Words, with each CJK ideograph counted as half a word.
    static func size(of content: String) -> Int {
        var words = 0
        var ideographs = 0
        var inWord = false
        for character in content {
            if character.isWhitespace {
                inWord = false
            } else if character.unicodeScalars.first.map(isIdeograph) == true {
                ideographs += 1
                inWord = false
            } else if !inWord {
                inWord = true
                words += 1
            }
        }
        return words + ideographs / 2
    }

    static func isIdeograph(_ scalar: Unicode.Scalar) -> Bool {
        (0x3040...0x30FF).contains(scalar.value) || (0x3400...0x9FFF).contains(scalar.value)
            || (0xAC00...0xD7AF).contains(scalar.value) || (0x20000...0x2FFFF).contains(scalar.value)
    }

    /// The stages known at the start; the dynamic pattern adds the rest as results come in. A role
    /// appears once, in its first stage (a lead that is also the synthesizer writes the reply there).
    public func initialPlan(_ pattern: CollaborationPattern, content: String) -> [[String]] {
        let stages: [[String]] =
            switch pattern {
            case .direct: [[team.directRole]]
            case .sequential: team.sequence.map { [$0] }
            case .parallel: [team.specialists, [team.synthesizer], [team.finalRole]]
            case .hierarchical: [chooseSpecialists(for: content), [team.synthesizer], [team.finalRole]]
            case .dynamic: [[ranked(content).first ?? team.specialists[0]]]
            }
        var seen = Set<String>()
        return stages.map { $0.filter { seen.insert($0).inserted } }.filter { !$0.isEmpty }
    }

    /// The planner for a run that `lead` leads (REQUEST_ROLE_FOCUS): the lead writes the reply in place
    /// of the final role, answers alone in the direct pattern, and is taken out of the stages before;
    /// the rest of the pattern is unchanged. The team's own final role leads by default.
    public func led(by lead: String) -> CollaborationPlanner {
        guard team.role(lead) != nil else { return self }
        var team = self.team
        team.directRole = lead
        guard lead != team.finalRole else { return CollaborationPlanner(team: team) }
        var sequence = team.sequence.filter { $0 != lead }
        if sequence.last == team.finalRole { sequence.removeLast() }
        team.sequence = sequence + [lead]
        let specialists = team.specialists.filter { $0 != lead }
        if !specialists.isEmpty { team.specialists = specialists }
        team.finalRole = lead
        var planner = CollaborationPlanner(team: team)
        planner.minDynamicSpecialists = min(minDynamicSpecialists, specialists.count)
        planner.maxDynamicSpecialists = maxDynamicSpecialists
        return planner
    }

    /// Every role a run of this pattern may involve, for COLLABORATION_START.
    public func participants(_ pattern: CollaborationPattern, plan: [[String]]) -> [String] {
        guard pattern == .dynamic else { return plan.flatMap { $0 } }
        return unique(team.specialists + [team.synthesizer, team.finalRole])
    }

    /// The hierarchical pattern's specialists: the relevant ones (two to three), in team order.
    func chooseSpecialists(for content: String) -> [String] {
        let chosen = Set(ranked(content).prefix(3).filter { relevance(of: $0, to: content) > 0 })
        var result = team.specialists.filter { chosen.contains($0) }
        for name in team.specialists where result.count < 2 && !result.contains(name) { result.append(name) }
        return result
    }

    /// The dynamic pattern's next stage after `used` specialists, judged by the latest result: another
    /// specialist whose subject it raises, else the synthesizer; then the final role; then nil (done).
    public func nextDynamicStage(plan: [[String]], content: String, latestResult: String) -> [String]? {
        let done = plan.flatMap { $0 }
        if done.contains(team.finalRole) { return nil }
        if done.contains(team.synthesizer) { return [team.finalRole] }
        let used = done.filter { team.specialists.contains($0) }
        let candidates = team.specialists.filter { !used.contains($0) }
        if used.count < maxDynamicSpecialists, !candidates.isEmpty {
            let text = latestResult + " " + content
            let best = candidates.max { relevance(of: $0, to: text) < relevance(of: $1, to: text) }!
            let bestScore = relevance(of: best, to: text)
            // Ties keep team order: `max` returns the last maximal element, so look for the first.
            let first = candidates.first { relevance(of: $0, to: text) == bestScore }!
            if bestScore > 0 || used.count < minDynamicSpecialists { return [first] }
        }
        return [team.synthesizer]
    }

    /// Specialists by relevance to `text`, best first, ties in team order.
    func ranked(_ text: String) -> [String] {
        team.specialists.enumerated()
            .sorted { lhs, rhs in
                let (left, right) = (relevance(of: lhs.element, to: text), relevance(of: rhs.element, to: text))
                return left != right ? left > right : lhs.offset < rhs.offset
            }
            .map(\.element)
    }

    /// How many of the role's keywords the text mentions.
    func relevance(of roleName: String, to text: String) -> Int {
        guard let role = team.role(roleName) else { return 0 }
        let lowered = text.lowercased()
        return role.keywords.filter { lowered.contains($0.lowercased()) }.count
    }

    private func unique(_ names: [String]) -> [String] {
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }
}
