/// Merges a channel's recovered history with its live events so a follower sees every offset exactly
/// once, in order: a gateway's client feed, a voice session following its answer. A plain state
/// machine: the follower feeds it and carries out what it returns.
///
/// The live subscription starts *before* the history is read, so every event is in at least one of
/// the two; live events that arrive while recovering are held and merged by offset afterwards.
public struct ChannelSequencer: Sendable {
    public typealias Event = ChannelWire.Message

    public enum LiveAction: Equatable, Sendable {
        case deliver(Event)
        case hold
        case dropDuplicate
        /// An offset was skipped or the epoch changed: the client must re-sync.
        case gap(expected: Int64, got: Int64)
    }

    public enum RecoveryResult: Equatable, Sendable {
        /// The missed events followed by the held live ones, all contiguous.
        case recovered([Event])
        /// The position is outside the window or of another epoch: nothing is replayed, and the
        /// client reloads from durable history. The held live events newer than the channel's top
        /// at recovery time are returned so the live stream continues without a gap.
        case notRecovered(live: [Event])
    }

    private enum Mode { case recovering, live }
    private var mode = Mode.recovering
    private var held: [Event] = []
    /// The last offset the client has (or was told to reload up to), and its epoch.
    public private(set) var lastOffset: Int64 = 0
    public private(set) var epoch: String?

    public init() {}

    /// A live event from PUB/SUB.
    public mutating func receiveLive(_ event: Event) -> LiveAction {
        switch mode {
        case .recovering:
            held.append(event)
            return .hold
        case .live:
            if let epoch, event.epoch != epoch { return .gap(expected: lastOffset + 1, got: event.offset) }
            if event.offset <= lastOffset { return .dropDuplicate }
            if epoch != nil && event.offset != lastOffset + 1 {
                return .gap(expected: lastOffset + 1, got: event.offset)
            }
            lastOffset = event.offset
            epoch = event.epoch
            return .deliver(event)
        }
    }

    /// Live events were missed (a gap, or the PUB/SUB connection was made again): hold live events again
    /// (`event`, the one that showed the gap, first) until what was missed has been read from the stream
    /// and handed to `finishRecovery` with the returned position. nil while a repair is already under way.
    public mutating func beginRepair(holding event: Event? = nil) -> (offset: Int64, epoch: String?)? {
        guard mode == .live else {
            if let event { held.append(event) }
            return nil
        }
        mode = .recovering
        held = event.map { [$0] } ?? []
        return (lastOffset, epoch)
    }

    /// Ends recovery. `history` is the stream from `since.offset + 1` on, `top` the channel's newest
    /// offset and epoch when the history was read (nil: the channel has no history).
    public mutating func finishRecovery(
        since: StreamPosition?, top: (offset: Int64, epoch: String)?, history: [Event]
    ) -> RecoveryResult {
        mode = .live
        let held = self.held
        self.held = []
        guard let top else {
            // An empty or expired channel: everything held is new.
            return finishLive(from: held, recovered: since == nil || since?.offset == 0)
        }
        epoch = top.epoch
        guard let since else {
            // A plain subscription: start after the current top, and deliver what came since.
            lastOffset = top.offset
            return .recovered(takeNewer(held))
        }
        let contiguous =
            since.epoch == top.epoch && since.offset <= top.offset
            && (since.offset == top.offset || history.first?.offset == since.offset + 1)
            && zip(history, history.dropFirst()).allSatisfy { $1.offset == $0.offset + 1 }
            && (history.last?.offset ?? since.offset) >= top.offset
        guard contiguous else {
            lastOffset = top.offset
            return .notRecovered(live: takeNewer(held))
        }
        lastOffset = since.offset
        var events: [Event] = []
        for event in history where event.offset == lastOffset + 1 {
            events.append(event)
            lastOffset = event.offset
        }
        return .recovered(events + takeNewer(held))
    }

    /// Ends a repair `beginRepair` began at `from`: `history` is the stream after `from.offset`, `top`
    /// as for `finishRecovery`. A follower that had no position yet takes the channel from its start.
    public mutating func finishRepair(
        from: (offset: Int64, epoch: String?), top: (offset: Int64, epoch: String)?, history: [Event]
    ) -> RecoveryResult {
        let since = StreamPosition(epoch: from.epoch ?? top?.epoch ?? "", offset: from.offset)
        return finishRecovery(since: since, top: top, history: history)
    }

    private mutating func finishLive(from held: [Event], recovered: Bool) -> RecoveryResult {
        let sorted = held.sorted { $0.offset < $1.offset }
        if let first = sorted.first {
            epoch = first.epoch
            lastOffset = first.offset - 1
        }
        let events = takeNewer(sorted)
        return recovered ? .recovered(events) : .notRecovered(live: events)
    }

    /// The held events after `lastOffset`, in order, without duplicates; stops at a gap (the next live
    /// event then reports it).
    private mutating func takeNewer(_ events: [Event]) -> [Event] {
        var result: [Event] = []
        for event in events.sorted(by: { $0.offset < $1.offset }) where event.offset > lastOffset {
            guard event.offset == lastOffset + 1, epoch == nil || event.epoch == epoch else { break }
            result.append(event)
            lastOffset = event.offset
            epoch = event.epoch
        }
        return result
    }
}
