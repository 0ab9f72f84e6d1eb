/// Speech/silence per frame from energy against an adaptive noise floor, with hysteresis, a minimum
/// silence for the end of an utterance and a pre-roll so the first syllable is not cut. A plain struct:
/// the session feeds it frames and acts on the events it returns.
public struct VoiceActivityDetector: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// A frame is voiced when its RMS is this many times the noise floor…
        public var speechToNoiseRatio: Double = 3.0
        /// …and above this absolute RMS (of 32768), so near-digital silence never counts as speech.
        public var minimumSpeechRMS: Double = 200
        /// Voiced frames among the last `window` that start speech (3 of 5, like the reference server).
        public var framesToStart = 3
        public var window = 5
        /// Silence that ends an utterance.
        public var minSilenceMilliseconds = 600
        /// Audio kept from before the start of speech.
        public var preRollMilliseconds = 600
        /// An utterance is cut here even if the speaker goes on.
        public var maxUtteranceMilliseconds = 15_000
        /// How fast the floor follows quieter (fast) and louder (slow) non-speech audio.
        public var floorFallRate = 0.2
        public var floorRiseRate = 0.02
        /// Voiced frames raise the floor very slowly too: real speech has pauses that pull it back down,
        /// a new steady hum has none and stops counting as speech within a couple of seconds.
        public var floorRiseRateInSpeech = 0.005

        public init() {}
    }

    public enum Event: Sendable, Equatable {
        case speechStarted
        /// The utterance's samples (pre-roll included) and how many trailing silent samples it carries.
        case utteranceEnded(samples: [Int16], trailingSilenceSamples: Int)
    }

    public let configuration: Configuration
    public let sampleRate: Int
    public private(set) var noiseFloor: Double = 100
    public private(set) var inSpeech = false
    private var recent: [Bool] = []
    private var preRoll: [[Int16]] = []
    private var preRollSamples = 0
    private var utterance: [Int16] = []
    private var silentSamples = 0

    public init(configuration: Configuration = Configuration(), sampleRate: Int = 16_000) {
        self.configuration = configuration
        self.sampleRate = sampleRate
    }

    public static func rms(_ samples: [Int16]) -> Double {
        guard !samples.isEmpty else { return 0 }
        var sum = 0.0
        for sample in samples { sum += Double(sample) * Double(sample) }
        return (sum / Double(samples.count)).squareRoot()
    }

    public func isVoiced(rms: Double) -> Bool {
        rms >= configuration.minimumSpeechRMS && rms >= noiseFloor * configuration.speechToNoiseRatio
    }

    func samples(milliseconds: Int) -> Int { sampleRate * milliseconds / 1000 }

    /// Feeds one frame; returns what it changed.
    public mutating func process(_ frame: [Int16]) -> Event? {
        let energy = Self.rms(frame)
        let voiced = isVoiced(rms: energy)
        let rate =
            energy < noiseFloor
            ? configuration.floorFallRate : voiced ? configuration.floorRiseRateInSpeech : configuration.floorRiseRate
        noiseFloor = max(1, noiseFloor + (energy - noiseFloor) * rate)
        recent.append(voiced)
        if recent.count > configuration.window { recent.removeFirst(recent.count - configuration.window) }
        if !inSpeech {
            preRoll.append(frame)
            preRollSamples += frame.count
            while preRollSamples - (preRoll.first?.count ?? 0)
                >= samples(milliseconds: configuration.preRollMilliseconds)
            {
                preRollSamples -= preRoll.removeFirst().count
            }
            guard recent.filter({ $0 }).count >= configuration.framesToStart else { return nil }
            inSpeech = true
            utterance = preRoll.flatMap { $0 }
            preRoll.removeAll()
            preRollSamples = 0
            silentSamples = 0
            return .speechStarted
        }
        utterance += frame
        silentSamples = voiced ? 0 : silentSamples + frame.count
        if silentSamples >= samples(milliseconds: configuration.minSilenceMilliseconds)
            || utterance.count >= samples(milliseconds: configuration.maxUtteranceMilliseconds)
        {
            return finish()
        }
        return nil
    }

    /// Ends the current utterance now (manual mode's `listen stop`); nil when nothing was heard.
    public mutating func flush() -> Event? {
        inSpeech ? finish() : nil
    }

    /// Forgets everything but the noise floor (a new listening phase).
    public mutating func reset() {
        inSpeech = false
        recent.removeAll()
        preRoll.removeAll()
        preRollSamples = 0
        utterance.removeAll()
        silentSamples = 0
    }

    private mutating func finish() -> Event {
        let event = Event.utteranceEnded(samples: utterance, trailingSilenceSamples: silentSamples)
        inSpeech = false
        recent.removeAll()
        utterance = []
        silentSamples = 0
        return event
    }
}
