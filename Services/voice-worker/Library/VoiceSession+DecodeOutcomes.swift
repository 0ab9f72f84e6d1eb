extension VoiceSession {
    /// Failures among the last `window` packets.
    struct DecodeOutcomes {
        let window: Int
        private var recent: [Bool] = []
        private var failures = 0

        init(window: Int) { self.window = window }

        /// Records one packet; returns the failures in the window.
        mutating func record(failed: Bool) -> Int {
            recent.append(failed)
            if failed { failures += 1 }
            if recent.count > window, recent.removeFirst() { failures -= 1 }
            return failures
        }
    }
}
