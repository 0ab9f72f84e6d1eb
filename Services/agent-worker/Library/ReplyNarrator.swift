import SwitchboardContracts

/// One role's answer, decided without I/O: which chunks go out and when, the role's steps, the reply's
/// start and end, and the task's outcome. `StreamingTask` feeds it what happens (the task begins, the
/// model's text, a deadline, the model's end, a failure, a stop) and performs the effects in order.
///
/// An answer is: agent_start; the chunks an earlier attempt recorded, again; the model's text in chunks
/// (`Chunker`), each recorded before it is sent, the first preceded by the role's step to RESPONDING and
/// MESSAGE_STREAM_START; then what is left, the last chunk of a complete answer marked so (an empty one
/// when the model's end came after the last text was sent); MESSAGE_STREAM_END, agent_complete or error;
/// and the result. A workflow llm node's chunks are node_progress, and it has no other frames.
struct ReplyNarrator {
    /// What the task is, which decides the frames it gets.
    struct Kind: Sendable, Equatable {
        /// A collaboration's role: its state moves in Redis and every step is announced.
        var collaborative: Bool
        /// The answer is the reply the user sees (MESSAGE_STREAM_*), not a contribution (AGENT_CHUNK).
        var isFinal: Bool
        /// A workflow llm node's task: chunks as node_progress, nothing else (the runner reports the node).
        var isWorkflowNode: Bool

        init(collaborative: Bool, isFinal: Bool, isWorkflowNode: Bool) {
            self.collaborative = collaborative
            self.isFinal = isFinal
            self.isWorkflowNode = isWorkflowNode
        }

        init(_ task: AgentTaskRequested) {
            self.init(
                collaborative: task.runId != nil && task.workflowNode == nil, isFinal: task.isFinal ?? true,
                isWorkflowNode: task.workflowNode != nil)
        }
    }

    enum Input: Sendable, Equatable {
        /// The task starts; `stopped` when its run was stopped before (no model call at all).
        case begin(stopped: Bool)
        /// Text from the model.
        case delta(String)
        /// A deadline the narrator asked for (`Effect.wake`) has come, or one before it.
        case deadline
        /// The model's answer is complete.
        case end
        case failure(ProviderError)
        /// The user stopped the run.
        case stopped
    }

    enum Outcome: Sendable, Equatable {
        case completed
        case stopped
        case failed(ProviderError)
    }

    /// A chunk of a conversation's answer (MESSAGE_STREAM_CHUNK or AGENT_CHUNK).
    struct Chunk: Sendable, Equatable {
        var text: String
        /// Its place in the answer: 0, 1, 2, … (its event id).
        var index: Int
        /// The characters sent before it (seed 000's `position`).
        var position: Int
        /// The last chunk of a complete answer (seed 001's `is_complete`).
        var isLast: Bool
        /// When the model's first text came, on the first chunk (the orchestration-overhead benchmark).
        var firstTokenAt: ContinuousClock.Instant?
    }

    /// How the answer ended, for its last frames and its result.
    struct Ending: Sendable, Equatable {
        var outcome: Outcome
        var content: String
        var chunks: Int
        /// From the task's start to the model's end, stop or failure.
        var durationMs: Int
    }

    enum Effect: Sendable, Equatable {
        /// agent_start.
        case announceStart
        /// Ask the model for the answer (after what was recorded).
        case callModel
        /// Sleep until `at`, then send `.deadline`.
        case wake(at: ContinuousClock.Instant)
        /// Write chunks to the task's journal before they are sent; `complete` marks the answer whole.
        case record([String], complete: Bool)
        /// Move the role in Redis and announce the steps taken.
        case moveRole(to: RoleStatus, reason: String)
        /// MESSAGE_STREAM_START.
        case startReply
        case chunk(Chunk)
        /// A workflow llm node's chunk at `index`, with the answer so far.
        case nodeProgress(String, index: Int, text: String)
        /// Cancel the model's request (a stop must end generation, not just hide it).
        case stopModel
        /// MESSAGE_STREAM_END.
        case endReply(Ending)
        /// agent_complete, or error for a failure.
        case announceEnd(Ending)
        /// Wait for every frame, send the result to the requester and mark the task done.
        case finish(Ending)
    }

    let kind: Kind
    let started: ContinuousClock.Instant
    /// What an earlier attempt recorded.
    private let recorded: TaskProgress
    private var chunker: Chunker
    private var content = ""
    private var chunkCount = 0
    /// The characters sent: the next chunk's `position`.
    private var offset = 0
    private var responding = false
    private var firstTokenAt: ContinuousClock.Instant?
    private var modelCalled = false
    private(set) var isFinished = false
    /// The deadline the executor sleeps towards, until a `.deadline` at or after it.
    private var scheduled: ContinuousClock.Instant?

    init(
        kind: Kind, recorded: TaskProgress = TaskProgress(), started: ContinuousClock.Instant,
        chunking: Chunker.Settings = Chunker.Settings()
    ) {
        self.kind = kind
        self.recorded = recorded
        self.started = started
        self.chunker = Chunker(settings: chunking)
    }

    mutating func receive(_ input: Input, now: ContinuousClock.Instant) -> [Effect] {
        guard !isFinished else { return [] }
        var effects: [Effect] = []
        switch input {
        case .begin(let stopped):
            if !kind.isWorkflowNode { effects.append(.announceStart) }
            // An earlier attempt's chunks, again under their ids: the notifier drops those the client had.
            for (index, chunk) in recorded.chunks.enumerated() {
                emit(chunk, isLast: recorded.generated && index == recorded.chunks.count - 1, into: &effects)
            }
            if stopped {
                finish(.stopped, now: now, into: &effects)
            } else if recorded.generated {
                // The answer was complete before the crash: nothing to ask the model.
                finish(.completed, now: now, into: &effects)
            } else {
                modelCalled = true
                effects.append(.callModel)
            }
            return effects
        case .delta(let text):
            if firstTokenAt == nil { firstTokenAt = now }
            send(chunker.append(text, now: now), into: &effects)
        case .deadline:
            if let scheduled, scheduled <= now { self.scheduled = nil }
            send(chunker.tick(now: now), into: &effects)
        case .end:
            finish(.completed, now: now, into: &effects)
            return effects
        case .failure(let error):
            finish(.failed(error), now: now, into: &effects)
            return effects
        case .stopped:
            finish(.stopped, now: now, into: &effects)
            return effects
        }
        if let deadline = chunker.nextDeadline, deadline != scheduled {
            scheduled = deadline
            effects.append(.wake(at: deadline))
        }
        return effects
    }

    /// Records chunks before sending them, so a successor resumes with exactly what may have been shown.
    private mutating func send(_ chunks: [String], complete: Bool = false, into effects: inout [Effect]) {
        guard !chunks.isEmpty || complete else { return }
        effects.append(.record(chunks, complete: complete))
        for (index, chunk) in chunks.enumerated() {
            emit(chunk, isLast: complete && index == chunks.count - 1, into: &effects)
        }
    }

    private mutating func emit(_ chunk: String, isLast: Bool, into effects: inout [Effect]) {
        respond(reason: "first tokens", into: &effects)
        content += chunk
        if kind.isWorkflowNode {
            effects.append(.nodeProgress(chunk, index: chunkCount, text: content))
        } else {
            effects.append(
                .chunk(
                    Chunk(
                        text: chunk, index: chunkCount, position: offset, isLast: isLast,
                        firstTokenAt: chunkCount == 0 ? firstTokenAt : nil)))
            offset += ChatCentreDialect.length(chunk)
        }
        chunkCount += 1
    }

    /// The role starts answering: THINKING → RESPONDING, and the reply's start.
    private mutating func respond(reason: String, into effects: inout [Effect]) {
        guard !responding else { return }
        responding = true
        if kind.collaborative { effects.append(.moveRole(to: .responding, reason: reason)) }
        if kind.isFinal { effects.append(.startReply) }
    }

    private mutating func finish(_ outcome: Outcome, now: ContinuousClock.Instant, into effects: inout [Effect]) {
        isFinished = true
        if modelCalled { effects.append(.stopModel) }
        let rest = chunker.finish()
        if !recorded.generated {
            let complete = outcome == .completed
            // The last chunk of a complete answer says so: when the model's end came after the last text
            // was sent, an empty chunk carries it (a workflow node's runner reports its own end).
            send(complete && rest.isEmpty && !kind.isWorkflowNode ? [""] : rest, complete: complete, into: &effects)
        }
        let ending = Ending(
            outcome: outcome, content: content, chunks: chunkCount, durationMs: Int((now - started) / .milliseconds(1)))
        switch outcome {
        case .stopped:
            // THINKING → RESPONDING → (orchestrator) IDLE: a stop is not an error.
            if kind.collaborative && !responding { effects.append(.moveRole(to: .responding, reason: "stopped")) }
            if kind.isFinal && responding { effects.append(.endReply(ending)) }
        case .failed(let error):
            if kind.collaborative { effects.append(.moveRole(to: .error, reason: "\(error)")) }
            if kind.isFinal && responding { effects.append(.endReply(ending)) }
        case .completed:
            respond(reason: "answer ready", into: &effects)
            if kind.isFinal { effects.append(.endReply(ending)) }
        }
        if !kind.isWorkflowNode { effects.append(.announceEnd(ending)) }
        effects.append(.finish(ending))
    }
}
