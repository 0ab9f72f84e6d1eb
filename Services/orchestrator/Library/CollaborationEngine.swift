import Foundation
import SwitchboardContracts

/// A step the orchestrator takes, in order.
public enum CollaborationEffect: Codable, Sendable, Equatable {
    /// A client frame for the conversation (and, when `roleActivity`, the role-activity channel).
    case event(frameType: String, data: JSONValue, roleActivity: Bool)
    /// Move a role through `path`, announcing each legal step as ROLE_STATUS_CHANGE (and entering
    /// THINKING as ROLE_THINKING_START with `estimatedMs`).
    case transition(role: String, path: [RoleStatus], reason: String, estimatedMs: Int?)
    case task(AgentTaskRequested)
    /// Tell agent-workers to stop the run's roles (those running and those not started yet).
    case stopRun(runId: String)

    /// A typed frame as an `event`. Frame payloads hold strings, integers and finite numbers, which
    /// always encode.
    static func frame(_ payload: some FramePayload, roleActivity: Bool) -> CollaborationEffect {
        .event(frameType: payload.frameType, data: (try? payload.data()) ?? .null, roleActivity: roleActivity)
    }
}

/// Decides the next steps of a conversation's collaboration from a chat message or a role's result.
/// Pure: the orchestrator loads the record, calls it, applies the effects, stores the record, so any
/// orchestrator instance can advance any run.
public struct CollaborationEngine: Sendable {
    public let team: Team
    public let planner: CollaborationPlanner
    /// A run with no result for this long is abandoned when the next message comes.
    public var staleAfterMs: Int64 = 10 * 60 * 1000

    public init(team: Team) {
        self.team = team
        self.planner = CollaborationPlanner(team: team)
    }

    /// Message ids and client message ids remembered per conversation.
    public static let rememberedIDs = 200
    /// Messages waiting for a busy conversation (busy policy `enqueue`); more are answered
    /// MESSAGE_REJECTED `queue_full` (docs/protocol.md).
    public static let maxQueuedMessages = BusyPolicy.maxQueuedMessages

    /// MESSAGE_REJECTED for `message`: it is not answered, and `reason` says why (docs/protocol.md).
    static func rejection(
        _ message: ChatMessageSubmitted, reason: String, duplicateOf: String? = nil, runId: String? = nil,
        limit: Int? = nil
    ) -> CollaborationEffect {
        .frame(
            MessageRejected(
                conversationId: message.conversationId, messageId: message.messageId,
                clientMessageId: message.clientMessageId, reason: reason, duplicateOf: duplicateOf, runId: runId,
                limit: limit),
            roleActivity: false)
    }

    /// `resultsLost`: the run in progress will never hear from the roles it waits for (`LostResults`),
    /// so it is abandoned now, like a stale one, instead of holding this message back.
    public func receive(
        message: ChatMessageSubmitted, traceparent: String, now: Int64, record: inout ConversationRecord,
        resultsLost: Bool = false
    ) -> [CollaborationEffect] {
        // A redelivered event: already handled, and already answered.
        guard !record.seen.contains(message.messageId) else { return [] }
        record.seen.append(message.messageId)
        if record.seen.count > Self.rememberedIDs { record.seen.removeFirst(record.seen.count - Self.rememberedIDs) }
        // A client message id its user sent before (a retry, or an id reused by mistake): never run
        // twice, never silent. The answer names the first message so a retrying client follows it.
        var clientMessages = record.clientMessages ?? []
        if let first = clientMessages.first(where: {
            $0.userId == message.userId && $0.clientMessageId == message.clientMessageId
        }) {
            return [Self.rejection(message, reason: "duplicate", duplicateOf: first.messageId)]
        }
        clientMessages.append(
            .init(userId: message.userId, clientMessageId: message.clientMessageId, messageId: message.messageId))
        if clientMessages.count > Self.rememberedIDs {
            clientMessages.removeFirst(clientMessages.count - Self.rememberedIDs)
        }
        record.clientMessages = clientMessages
        var effects: [CollaborationEffect] = []
        if let run = record.run {
            guard resultsLost || now - run.startedAt > staleAfterMs else {
                switch BusyPolicy(rawValue: message.busyPolicy ?? "") ?? .enqueue {
                case .enqueue:
                    guard record.queue.count < Self.maxQueuedMessages else {
                        return [
                            Self.rejection(
                                message, reason: "queue_full", runId: run.runId, limit: Self.maxQueuedMessages)
                        ]
                    }
                    record.queue.append(.init(message: message, traceparent: traceparent))
                    return []
                case .reject:
                    return [Self.rejection(message, reason: "busy", runId: run.runId)]
                case .interrupt:
                    // Answered next, before anything queued earlier.
                    record.queue.insert(.init(message: message, traceparent: traceparent), at: 0)
                    return stop(&record, now: now)
                }
            }
            effects += finish(&record, now: now, ending: .abandoned)
        }
        effects += start(message, traceparent: traceparent, now: now, record: &record)
        return effects
    }

    /// The user asked to stop: the roles still working stop and report what they have; the run ends
    /// when they have. Stopping twice, or with no run, does nothing more.
    public func receive(interrupt: ChatInterruptRequested, now: Int64, record: inout ConversationRecord)
        -> [CollaborationEffect]
    {
        stop(&record, now: now)
    }

    private func stop(_ record: inout ConversationRecord, now: Int64) -> [CollaborationEffect] {
        guard var run = record.run, run.stopping != true else { return [] }
        run.stopping = true
        record.run = run
        return [.stopRun(runId: run.runId)]
    }

    /// The user asked that `role` lead the next run: remembered until a run starts. A role the team
    /// does not have is ignored (the gateway refuses it already).
    public func receive(focus: ChatRoleFocusRequested, record: inout ConversationRecord) -> [CollaborationEffect] {
        guard team.role(focus.role) != nil else { return [] }
        record.focus = focus.role
        return []
    }

    /// The planner of a run: the team's, or the one reshaped around the run's lead.
    func planner(for run: CollaborationRun) -> CollaborationPlanner {
        run.lead.map { planner.led(by: $0) } ?? planner
    }

    public func receive(result: AgentTaskCompleted, now: Int64, record: inout ConversationRecord)
        -> [CollaborationEffect]
    {
        guard var run = record.run, run.runId == result.runId, run.stage < run.plan.count,
            run.plan[run.stage].contains(result.role), run.contributions[result.role] == nil
        else { return [] }  // a redelivered or stale result
        let duration = Int(result.finishedAt - (run.dispatchedAt[result.role] ?? result.startedAt))
        run.contributions[result.role] = RoleContribution(
            role: result.role, status: result.status, content: result.content, error: result.error,
            durationMs: max(duration, 0))
        run.streamedChunks[result.role] = result.chunks
        var effects: [CollaborationEffect] = []
        if result.status == AgentTaskCompleted.completed {
            effects.append(.transition(role: result.role, path: [.idle], reason: "answer delivered", estimatedMs: nil))
        } else if result.status == AgentTaskCompleted.stopped {
            effects.append(.transition(role: result.role, path: [.idle], reason: "stopped", estimatedMs: nil))
        }
        let stageRoles = run.plan[run.stage]
        guard stageRoles.allSatisfy({ run.contributions[$0] != nil }) else {
            effects.append(
                progress(&run, stage: "ai_processing", activeRole: stageRoles.first { run.contributions[$0] == nil }))
            record.run = run
            return effects
        }
        if run.stopping == true {
            record.run = run
            return effects + finish(&record, now: now, ending: .stopped)
        }
        if run.pattern == .dynamic,
            let next = planner(for: run).nextDynamicStage(
                plan: run.plan, content: run.message.content, latestResult: result.content)
        {
            run.plan.append(next)
            for role in next { effects.append(assigned(role, run: run)) }
        }
        run.stage += 1
        record.run = run
        if run.stage < run.plan.count {
            effects += dispatch(&record, now: now)
        } else {
            effects += finish(&record, now: now, ending: .normal)
        }
        return effects
    }

    private func start(
        _ message: ChatMessageSubmitted, traceparent: String, now: Int64, record: inout ConversationRecord
    ) -> [CollaborationEffect] {
        // The message's own lead (a role-named OpenAI model), else the conversation's focus; a focus is used once.
        let lead = [message.leadRole, record.focus].compactMap { $0 }.first { team.role($0) != nil }
        record.focus = nil
        let planner = lead.map { self.planner.led(by: $0) } ?? self.planner
        let (pattern, reason) = planner.pattern(for: message.content, requested: message.pattern)
        let plan = planner.initialPlan(pattern, content: message.content)
        var run = CollaborationRun(
            runId: message.messageId, message: message, traceparent: traceparent, pattern: pattern, reason: reason,
            plan: plan, stage: 0, history: Array(record.history.suffix(team.historyLimit)), startedAt: now)
        run.lead = lead
        var effects: [CollaborationEffect] = []
        // Stage 1, preprocessing: de-duplicated above, context taken, route decided.
        effects.append(progress(&run, stage: "preprocessing", activeRole: nil, value: 5))
        let estimated = plan.reduce(0) { total, stage in
            total + (stage.compactMap { team.role($0)?.estimatedMs }.max() ?? 0)
        }
        let participants = planner.participants(pattern, plan: plan)
        effects.append(
            .frame(
                CollaborationStart(
                    conversationId: message.conversationId, runId: run.runId, messageId: message.messageId,
                    roles: participants, pattern: pattern, reason: reason, estimatedDuration: estimated, lead: lead),
                roleActivity: true))
        effects.append(
            .frame(
                CollaborationInitiated(
                    conversationId: message.conversationId, runId: run.runId, pattern: pattern,
                    participants: participants, estimatedDuration: estimated),
                roleActivity: true))
        for role in plan.flatMap({ $0 }) { effects.append(assigned(role, run: run)) }
        record.history.append(ConversationTurn(role: "user", content: message.content))
        record.history = Array(record.history.suffix(team.historyLimit))
        record.run = run
        effects += dispatch(&record, now: now)
        return effects
    }

    private func assigned(_ role: String, run: CollaborationRun) -> CollaborationEffect {
        let stage = run.plan.firstIndex { $0.contains(role) } ?? 0
        let dependencies = run.plan.prefix(stage).flatMap { $0 }
        return .frame(
            RoleAssigned(
                conversationId: run.message.conversationId, runId: run.runId, role: role,
                task: .init(
                    id: Self.taskID(run: run, role: role), description: team.role(role)?.responsibility ?? role),
                priority: stage + 1, dependencies: dependencies),
            roleActivity: true)
    }

    /// Starts the roles of the current stage, each with the results of every role before it.
    private func dispatch(_ record: inout ConversationRecord, now: Int64) -> [CollaborationEffect] {
        guard var run = record.run else { return [] }
        var effects: [CollaborationEffect] = []
        let finished = run.plan.prefix(run.stage).flatMap { $0 }.compactMap { run.contributions[$0] }
        let inputs = finished.filter { $0.status == AgentTaskCompleted.completed }
        for role in run.plan[run.stage] {
            let definition = team.role(role)
            let path: [RoleStatus] =
                finished.isEmpty ? [.analyzing, .thinking] : [.analyzing, .collaborating, .thinking]
            effects.append(
                .transition(
                    role: role, path: path,
                    reason: finished.isEmpty
                        ? "assigned" : "building on \(finished.map(\.role).joined(separator: ", "))",
                    estimatedMs: definition?.estimatedMs))
            run.dispatchedAt[role] = now
            let isFinal = run.stage == run.plan.count - 1 && isLastStage(run)
            effects.append(
                .task(
                    AgentTaskRequested(
                        taskId: Self.taskID(run: run, role: role), conversationId: run.message.conversationId,
                        userId: run.message.userId, replyMessageId: replyID(run: run, role: role),
                        inReplyTo: run.message.messageId, role: role, prompt: run.message.content, runId: run.runId,
                        responsibility: definition?.responsibility, systemPrompt: definition?.systemPrompt,
                        provider: definition?.provider ?? .offline, contributions: inputs, history: run.history,
                        isFinal: isFinal, dispatchedAt: now,
                        // A voice device's tools go to the role whose answer is spoken.
                        deviceTools: isFinal ? run.message.deviceTools : nil)))
        }
        effects.append(progress(&run, stage: "ai_processing", activeRole: run.plan[run.stage].first))
        record.run = run
        return effects
    }

    /// The final stage is the last planned one, except in the dynamic pattern until its final role is planned.
    private func isLastStage(_ run: CollaborationRun) -> Bool {
        run.pattern != .dynamic || run.plan[run.stage].contains(planner(for: run).team.finalRole)
    }

    enum Ending { case normal, abandoned, stopped }

    /// Stage 3, post-processing: the answer (with a note on the roles that failed), the summary, the
    /// roles back to IDLE, then the next queued message.
    private func finish(_ record: inout ConversationRecord, now: Int64, ending: Ending) -> [CollaborationEffect] {
        guard var run = record.run else { return [] }
        let abandoned = ending == .abandoned
        var effects: [CollaborationEffect] = []
        let contributions = run.roles.compactMap { run.contributions[$0] }
        let failed = contributions.filter { $0.status == AgentTaskCompleted.failed }.map(\.role)
        let missing = run.roles.filter { run.contributions[$0] == nil }
        let final = run.contributions[run.finalRole]
        let answer: String
        let status: String
        if ending == .stopped {
            // What the team had said when it was stopped: the reply so far, else the latest words.
            let latest = contributions.last { !$0.content.isEmpty }
            answer = (final?.content.isEmpty == false ? final?.content : nil) ?? latest?.content ?? ""
            status = "stopped"
            if (run.streamedChunks[run.finalRole] ?? 0) == 0 {
                effects += fallbackReply(
                    run: run, content: answer, role: latest?.role ?? run.finalRole, status: "stopped")
            }
        } else if let final, final.status == AgentTaskCompleted.completed {
            answer = final.content
            status = failed.isEmpty ? "completed" : "partial"
        } else {
            // The final role failed: answer with the last result the team did produce.
            let fallback = contributions.last { $0.status == AgentTaskCompleted.completed && !$0.content.isEmpty }
            status = abandoned ? "abandoned" : (fallback == nil ? "failed" : "partial")
            answer =
                fallback.map { "\($0.role) answers in place of \(run.finalRole), who could not: \($0.content)" }
                ?? "The team could not answer this message: every role failed."
            if !abandoned && (run.streamedChunks[run.finalRole] ?? 0) == 0 {
                effects += fallbackReply(run: run, content: answer, role: fallback?.role ?? run.finalRole)
            }
        }
        var note = ""
        if !failed.isEmpty {
            note = "Without \(failed.joined(separator: ", ")): failed, the team continued without them."
        }
        if abandoned { note += " The run was abandoned: no result from \(missing.joined(separator: ", "))." }
        if ending == .stopped { note += " Stopped by the user; the answer is what the team had said until then." }
        for role in failed + missing {
            // Failed roles are in ERROR; leave them IDLE for the next run.
            effects.append(.transition(role: role, path: [.idle], reason: "run finished", estimatedMs: nil))
        }
        effects.append(progress(&run, stage: "postprocessing", activeRole: nil, value: 95))
        effects.append(progress(&run, stage: "complete", activeRole: nil, value: 100))
        let result = CollaborationCompleted.Result(
            status: status, answer: answer,
            answeredBy: final?.status == AgentTaskCompleted.completed ? run.finalRole : "",
            failedRoles: failed, note: note.trimmingCharacters(in: .whitespaces))
        let duration = Int(max(now - run.startedAt, 0))
        effects.append(
            .frame(
                CollaborationComplete(
                    conversationId: run.message.conversationId, runId: run.runId, messageId: run.message.messageId,
                    pattern: run.pattern, result: result, contributions: contributions, duration: duration),
                roleActivity: true))
        let completedRoles = contributions.filter { $0.status == AgentTaskCompleted.completed }.count
        let completed = CollaborationCompleted(
            conversationId: run.message.conversationId, runId: run.runId, result: result,
            participantContributions: contributions,
            quality: .init(
                completionRate: run.roles.isEmpty ? 0 : Double(completedRoles) / Double(run.roles.count),
                completedRoles: completedRoles, failedRoles: failed.count,
                answeredByFinalRole: !result.answeredBy.isEmpty),
            duration: duration)
        effects.append(.frame(completed, roleActivity: true))
        record.history.append(ConversationTurn(role: "assistant", content: answer))
        record.history = Array(record.history.suffix(team.historyLimit))
        record.run = nil
        if !abandoned, !record.queue.isEmpty {
            let next = record.queue.removeFirst()
            effects += start(next.message, traceparent: next.traceparent, now: now, record: &record)
        }
        return effects
    }

    /// The reply when the final role failed before streaming anything, so the user's message is answered.
    private func fallbackReply(
        run: CollaborationRun, content: String, role: String, status: String = "fallback"
    ) -> [CollaborationEffect] {
        let messageID = replyID(run: run, role: run.finalRole)
        let conversation = run.message.conversationId
        return [
            .frame(
                MessageStreamStart(
                    messageId: messageID, conversationId: conversation, role: role, inReplyTo: run.message.messageId),
                roleActivity: false),
            .frame(
                FallbackReplyChunk(messageId: messageID, conversationId: conversation, chunk: content, role: role),
                roleActivity: false),
            .frame(
                MessageStreamEnd(
                    messageId: messageID,
                    finalMessage: .init(id: messageID, conversationId: conversation, role: role, content: content),
                    metadata: status == "stopped"
                        ? .init(chunks: 1, engine: "none", status: "stopped")
                        : .init(chunks: 1, engine: "fallback", failedRole: run.finalRole)),
                roleActivity: false),
        ]
    }

    /// COLLABORATION_PROGRESS: 0–100, never going back; AI processing spans 10–90 by finished roles.
    private func progress(
        _ run: inout CollaborationRun, stage: String, activeRole: String?, value: Int? = nil
    ) -> CollaborationEffect {
        let roles = run.roles
        let completed = roles.filter { run.contributions[$0] != nil }
        let active = run.stage < run.plan.count ? run.plan[run.stage].filter { run.contributions[$0] == nil } : []
        let pending = roles.filter { !completed.contains($0) && !active.contains($0) }
        // The dynamic pattern's length is unknown until it ends: count up to three specialists and two more.
        let planner = planner(for: run)
        let expected =
            run.pattern == .dynamic && !roles.contains(planner.team.finalRole)
            ? max(roles.count + 2, planner.maxDynamicSpecialists + 2) : max(roles.count, 1)
        let computed = value ?? (10 + 80 * completed.count / expected)
        run.progress = max(run.progress, min(computed, 100))
        return .frame(
            CollaborationProgress(
                conversationId: run.message.conversationId, runId: run.runId, progress: run.progress,
                currentStage: stage, completedTasks: completed, activeTasks: active, pendingTasks: pending,
                activeRole: activeRole),
            roleActivity: true)
    }

    static func taskID(run: CollaborationRun, role: String) -> String { "\(run.runId)-\(role.lowercased())" }

    /// The tasks of the current stage whose results the run still waits for.
    static func awaitedTaskIDs(_ run: CollaborationRun) -> [String] {
        guard run.plan.indices.contains(run.stage) else { return [] }
        return run.plan[run.stage].filter { run.dispatchedAt[$0] != nil && run.contributions[$0] == nil }
            .map { taskID(run: run, role: $0) }
    }

    /// The final role's reply keeps the one-role id, so clients see one reply per message.
    private func replyID(run: CollaborationRun, role: String) -> String {
        role == run.finalRole && isFinalPlanned(run)
            ? ReplyID.answering(run.message.messageId) : ReplyID.answering(run.message.messageId, role: role)
    }

    private func isFinalPlanned(_ run: CollaborationRun) -> Bool {
        run.pattern != .dynamic || run.roles.contains(planner(for: run).team.finalRole)
    }
}
