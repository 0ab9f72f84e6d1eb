import Foundation
import SwitchboardContracts
import Testing

@testable import AgentWorker

/// The decisions of one role's answer, fed as the executor feeds them (the task begins, the model's
/// text, deadlines, its end, a failure or a stop) and read back as effects.
@Suite struct ReplyNarratorTests {
    typealias Effect = ReplyNarrator.Effect
    typealias Chunk = ReplyNarrator.Chunk

    static let finalRole = ReplyNarrator.Kind(collaborative: true, isFinal: true, isWorkflowNode: false)
    static let contribution = ReplyNarrator.Kind(collaborative: true, isFinal: false, isWorkflowNode: false)
    static let direct = ReplyNarrator.Kind(collaborative: false, isFinal: true, isWorkflowNode: false)
    static let workflowNode = ReplyNarrator.Kind(collaborative: false, isFinal: false, isWorkflowNode: true)

    let t0 = ContinuousClock.now

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { t0 + .milliseconds(milliseconds) }

    func narrator(_ kind: ReplyNarrator.Kind, recorded: TaskProgress = TaskProgress()) -> ReplyNarrator {
        ReplyNarrator(kind: kind, recorded: recorded, started: t0)
    }

    func chunks(_ effects: [Effect]) -> [Chunk] {
        effects.compactMap { if case .chunk(let chunk) = $0 { chunk } else { nil } }
    }

    func ending(_ effects: [Effect]) -> ReplyNarrator.Ending? {
        effects.lazy.compactMap { if case .finish(let ending) = $0 { ending } else { nil } }.first
    }

    @Test func aNewTaskIsAnnouncedAndAsksTheModel() {
        var narrator = narrator(Self.finalRole)
        #expect(narrator.receive(.begin(stopped: false), now: t0) == [.announceStart, .callModel])
        #expect(!narrator.isFinished)
    }

    @Test func theFirstChunkIsRecordedThenPrecededByTheRoleStepAndTheReplyStart() {
        var narrator = narrator(Self.finalRole)
        _ = narrator.receive(.begin(stopped: false), now: t0)
        // Five tokens and the start of a sixth make a chunk; the sixth waits for more.
        #expect(narrator.receive(.delta("one two three"), now: at(10)) == [.wake(at: at(85))])
        let effects = narrator.receive(.delta(" four five six"), now: at(20))
        #expect(
            effects == [
                .record(["one two three four five "], complete: false),
                .moveRole(to: .responding, reason: "first tokens"), .startReply,
                .chunk(
                    Chunk(
                        text: "one two three four five ", index: 0, position: 0, isLast: false,
                        firstTokenAt: at(10))),
                .wake(at: at(95)),
            ])
        // Later chunks: no step, no start, the position counts the characters sent, no first-token time.
        let next = narrator.receive(.delta(" seven eight nine ten eleven"), now: at(30))
        #expect(
            chunks(next) == [Chunk(text: "six seven eight nine ten ", index: 1, position: 24, isLast: false)])
        #expect(!next.contains(.startReply))
    }

    @Test func textThatWaitsGoesOutAtItsDeadlineAndNothingWakesTheTaskWhenNothingIsDue() {
        var narrator = narrator(Self.direct)
        _ = narrator.receive(.begin(stopped: false), now: t0)
        // One character could be the start of a longer cluster: it waits, and no deadline is asked for.
        #expect(narrator.receive(.delta("H"), now: at(5)) == [])
        #expect(narrator.receive(.delta("ello"), now: at(10)) == [.wake(at: at(80))])
        // An early wake does nothing and asks for nothing new.
        #expect(narrator.receive(.deadline, now: at(40)) == [])
        let effects = narrator.receive(.deadline, now: at(80))
        #expect(
            effects == [
                .record(["Hell"], complete: false), .startReply,
                .chunk(Chunk(text: "Hell", index: 0, position: 0, isLast: false, firstTokenAt: at(5))),
            ])
        // The held-back "o" waits for more text or the end: no deadline until then.
        #expect(narrator.receive(.deadline, now: at(90)) == [])
        #expect(narrator.receive(.delta(" there"), now: at(100)) == [.wake(at: at(155))])
    }

    @Test func anEndSendsTheRestAsTheLastChunkThenTheEndFrames() {
        var narrator = narrator(Self.finalRole)
        _ = narrator.receive(.begin(stopped: false), now: t0)
        _ = narrator.receive(.delta("Hi"), now: at(10))
        _ = narrator.receive(.deadline, now: at(85))
        let effects = narrator.receive(.end, now: at(250))
        let ending = ReplyNarrator.Ending(outcome: .completed, content: "Hi", chunks: 2, durationMs: 250)
        #expect(
            effects == [
                .stopModel, .record(["i"], complete: true),
                .chunk(Chunk(text: "i", index: 1, position: 1, isLast: true)),
                .endReply(ending), .announceEnd(ending), .finish(ending),
            ])
        #expect(narrator.isFinished)
        // Nothing after the end counts.
        #expect(narrator.receive(.delta("more"), now: at(260)) == [])
        #expect(narrator.receive(.stopped, now: at(260)) == [])
    }

    @Test func aQuickAnswerStartsTheReplyWhenItEnds() {
        var narrator = narrator(Self.finalRole)
        _ = narrator.receive(.begin(stopped: false), now: t0)
        #expect(narrator.receive(.delta("Yes."), now: at(1)) == [.wake(at: at(76))])
        let effects = narrator.receive(.end, now: at(2))
        #expect(
            Array(effects.prefix(5)) == [
                .stopModel, .record(["Yes."], complete: true), .moveRole(to: .responding, reason: "first tokens"),
                .startReply, .chunk(Chunk(text: "Yes.", index: 0, position: 0, isLast: true, firstTokenAt: at(1))),
            ])
        #expect(ending(effects)?.outcome == .completed)
    }

    /// The model's end after the last text was sent: an empty chunk says the answer is complete.
    @Test func anAnswerWithoutTextStillMovesTheRoleAndStartsTheReply() {
        var narrator = narrator(Self.finalRole)
        _ = narrator.receive(.begin(stopped: false), now: t0)
        let effects = narrator.receive(.end, now: at(5))
        let ending = ReplyNarrator.Ending(outcome: .completed, content: "", chunks: 1, durationMs: 5)
        #expect(
            effects == [
                .stopModel, .record([""], complete: true), .moveRole(to: .responding, reason: "first tokens"),
                .startReply, .chunk(Chunk(text: "", index: 0, position: 0, isLast: true)), .endReply(ending),
                .announceEnd(ending), .finish(ending),
            ])
    }

    @Test func aStopBeforeTheTaskBeganMovesTheRoleOnWithoutAReply() {
        var narrator = narrator(Self.finalRole)
        let effects = narrator.receive(.begin(stopped: true), now: t0)
        let ending = ReplyNarrator.Ending(outcome: .stopped, content: "", chunks: 0, durationMs: 0)
        // No model call, so nothing to cancel; no reply was started, so none ends.
        #expect(
            effects == [
                .announceStart, .moveRole(to: .responding, reason: "stopped"), .announceEnd(ending), .finish(ending),
            ])
    }

    @Test func aStopMidAnswerSendsWhatWasWaitingAndEndsTheReplyAsStopped() {
        var narrator = narrator(Self.finalRole)
        _ = narrator.receive(.begin(stopped: false), now: t0)
        _ = narrator.receive(.delta("one two three four five six seven"), now: at(10))
        let effects = narrator.receive(.stopped, now: at(40))
        let ending = ReplyNarrator.Ending(
            outcome: .stopped, content: "one two three four five six seven", chunks: 2, durationMs: 40)
        #expect(
            effects == [
                .stopModel, .record(["seven"], complete: false),
                .chunk(Chunk(text: "seven", index: 1, position: 28, isLast: false)), .endReply(ending),
                .announceEnd(ending), .finish(ending),
            ])
    }

    @Test func aFailureMovesTheRoleToErrorAndEndsOnlyAStartedReply() {
        let failure = ProviderError(.http, "overloaded", status: 503)
        var silent = narrator(Self.finalRole)
        _ = silent.receive(.begin(stopped: false), now: t0)
        let ending = ReplyNarrator.Ending(outcome: .failed(failure), content: "", chunks: 0, durationMs: 30)
        #expect(
            silent.receive(.failure(failure), now: at(30)) == [
                .stopModel, .moveRole(to: .error, reason: "http 503: overloaded"), .announceEnd(ending),
                .finish(ending),
            ])

        var started = narrator(Self.finalRole)
        _ = started.receive(.begin(stopped: false), now: t0)
        _ = started.receive(.delta("one two three four five six"), now: at(10))
        let effects = started.receive(.failure(failure), now: at(50))
        #expect(chunks(effects).map(\.isLast) == [false])
        #expect(effects.contains(.moveRole(to: .error, reason: "http 503: overloaded")))
        #expect(
            effects.contains {
                if case .endReply(let ending) = $0 { ending.outcome == .failed(failure) } else { false }
            })
    }

    @Test func aResumedTaskSendsTheRecordedChunksAgainThenGoesOn() {
        var narrator = narrator(Self.finalRole, recorded: TaskProgress(chunks: ["Hello ", "wor"]))
        #expect(
            narrator.receive(.begin(stopped: false), now: t0) == [
                .announceStart, .moveRole(to: .responding, reason: "first tokens"), .startReply,
                .chunk(Chunk(text: "Hello ", index: 0, position: 0, isLast: false)),
                .chunk(Chunk(text: "wor", index: 1, position: 6, isLast: false)), .callModel,
            ])
        _ = narrator.receive(.delta("ld"), now: at(10))
        #expect(
            chunks(narrator.receive(.end, now: at(20))) == [Chunk(text: "ld", index: 2, position: 9, isLast: true)])
    }

    @Test func aResumedTaskWhoseAnswerWasCompleteDoesNotAskTheModel() {
        var narrator = narrator(Self.finalRole, recorded: TaskProgress(chunks: ["All ", "done."], generated: true))
        let effects = narrator.receive(.begin(stopped: false), now: t0)
        let ending = ReplyNarrator.Ending(outcome: .completed, content: "All done.", chunks: 2, durationMs: 0)
        // Nothing is recorded again.
        #expect(
            effects == [
                .announceStart, .moveRole(to: .responding, reason: "first tokens"), .startReply,
                .chunk(Chunk(text: "All ", index: 0, position: 0, isLast: false)),
                .chunk(Chunk(text: "done.", index: 1, position: 4, isLast: true)), .endReply(ending),
                .announceEnd(ending), .finish(ending),
            ])
    }

    @Test func aContributionHasNoReplyStream() {
        var narrator = narrator(Self.contribution)
        _ = narrator.receive(.begin(stopped: false), now: t0)
        _ = narrator.receive(.delta("Some thoughts"), now: at(1))
        let effects = narrator.receive(.end, now: at(2))
        #expect(!effects.contains(.startReply))
        #expect(!effects.contains { if case .endReply = $0 { true } else { false } })
        #expect(effects.contains(.moveRole(to: .responding, reason: "first tokens")))
        #expect(chunks(effects).last?.isLast == true)
    }

    @Test func aWorkflowNodeStreamsProgressAndNothingElse() {
        var narrator = narrator(Self.workflowNode)
        #expect(narrator.receive(.begin(stopped: false), now: t0) == [.callModel])
        _ = narrator.receive(.delta("one two three four five six"), now: at(10))
        let effects = narrator.receive(.end, now: at(20))
        let ending = ReplyNarrator.Ending(
            outcome: .completed, content: "one two three four five six", chunks: 2, durationMs: 20)
        #expect(
            effects == [
                .stopModel, .record(["six"], complete: true),
                .nodeProgress("six", index: 1, text: "one two three four five six"), .finish(ending),
            ])
        // An answer without text adds no empty chunk: the journal alone marks the answer whole.
        var empty = self.narrator(Self.workflowNode)
        _ = empty.receive(.begin(stopped: false), now: t0)
        let nothing = ReplyNarrator.Ending(outcome: .completed, content: "", chunks: 0, durationMs: 100)
        #expect(empty.receive(.end, now: at(100)) == [.stopModel, .record([], complete: true), .finish(nothing)])
    }

    /// The executor sleeps towards the newest deadline only: it relies on deadlines never moving earlier.
    @Test(arguments: 0..<20 as Range<UInt64>)
    func deadlinesNeverMoveEarlierAndEveryChunkIsSentOnce(seed: UInt64) {
        var rng = SplitMix64(state: seed)
        let text = TextGenerator.text(using: &rng)
        var narrator = narrator(Self.direct)
        _ = narrator.receive(.begin(stopped: false), now: t0)
        var now = t0
        var lastWake: ContinuousClock.Instant?
        var sent = ""
        var effects: [Effect] = []
        for delta in TextGenerator.deltas(of: text, using: &rng) {
            now += .milliseconds(Int.random(in: 0...60, using: &rng))
            effects += narrator.receive(.delta(delta), now: now)
            if Bool.random(using: &rng) { effects += narrator.receive(.deadline, now: now) }
        }
        effects += narrator.receive(.end, now: now + .milliseconds(1))
        for effect in effects {
            switch effect {
            case .wake(let deadline):
                #expect(lastWake.map { deadline >= $0 } ?? true)
                lastWake = deadline
            case .chunk(let chunk):
                sent += chunk.text
            default:
                break
            }
        }
        #expect(sent == text)
        #expect(chunks(effects).map(\.index) == Array(0..<chunks(effects).count))
    }
}
