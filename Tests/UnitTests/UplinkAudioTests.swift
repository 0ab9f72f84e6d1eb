import Foundation
import SwitchboardTestSupport
import SwitchboardVoice
import Testing

/// Negotiated uplink audio: what a hello may announce, and how the voice-worker turns any of it into
/// the 16 kHz, 60 ms frames its VAD and ASR take, without damaging the audio (SNR after Opus).
@Suite struct UplinkAudioTests {
    @Test func helloAudioParamsOpusCanCarryAreTaken() {
        for rate in [8_000, 12_000, 16_000, 24_000, 48_000] {
            for duration in [20, 40, 60, 120] {
                #expect(UplinkAudio.refusal(Xiaozhi.AudioParams(sampleRate: rate, frameDuration: duration)) == nil)
            }
        }
        #expect(
            UplinkAudio.refusal(Xiaozhi.AudioParams(format: "pcm", sampleRate: 16_000))
                == "uplink audio must be Opus, got pcm")
        #expect(UplinkAudio.refusal(Xiaozhi.AudioParams(sampleRate: 16_000, channels: 2))?.contains("mono") == true)
        #expect(UplinkAudio.refusal(Xiaozhi.AudioParams(sampleRate: 44_100))?.contains("sample_rate") == true)
        #expect(
            UplinkAudio.refusal(Xiaozhi.AudioParams(sampleRate: 16_000, frameDuration: 30))?.contains("frame_duration")
                == true)
    }

    @Test func theFramerCutsAnyRateIntoSixtyMillisecondsAtSixteenKilohertz() {
        var framer = UplinkFramer(sourceRate: 24_000)
        // 20 ms at 24 kHz is 480 samples → 320 at 16 kHz: three packets make one frame.
        #expect(framer.push([Int16](repeating: 100, count: 480)).isEmpty)
        #expect(framer.push([Int16](repeating: 100, count: 480)).isEmpty)
        let frames = framer.push([Int16](repeating: 100, count: 480))
        #expect(frames.count == 1 && frames[0].count == 960)
        // 120 ms at 8 kHz is 960 samples → 1920 at 16 kHz: two frames per packet.
        var narrow = UplinkFramer(sourceRate: 8_000)
        #expect(narrow.push([Int16](repeating: 0, count: 960)).map(\.count) == [960, 960])
        // 16 kHz, 60 ms: one frame per packet, untouched.
        var reference = UplinkFramer(sourceRate: 16_000)
        let packet = (0..<960).map { Int16($0) }
        #expect(reference.push(packet) == [packet])
        // A reset drops the partial frame.
        #expect(framer.push([Int16](repeating: 1, count: 480)).isEmpty)
        framer.reset()
        #expect(framer.push([Int16](repeating: 1, count: 960)).isEmpty)
    }

    /// A voiced, speech-like signal (a 140 Hz glottal pulse train through two formants, syllables of
    /// 200 ms) with a little deterministic noise: what a microphone hands the device's encoder.
    static func speechLike(seconds: Double, sampleRate: Int) -> [Int16] {
        var state: UInt32 = 0x1234_5678
        return (0..<Int(seconds * Double(sampleRate))).map { index in
            let t = Double(index) / Double(sampleRate)
            let envelope = 0.5 + 0.5 * sin(2 * Double.pi * 2.5 * t)
            var value = 0.0
            for harmonic in 1...20 {
                let frequency = 140.0 * Double(harmonic)
                guard frequency < Double(sampleRate) / 2 - 200 else { break }
                let formants =
                    exp(-pow((frequency - 700) / 250, 2)) + 0.6 * exp(-pow((frequency - 1200) / 300, 2)) + 0.05
                value += formants * sin(2 * Double.pi * frequency * t) / Double(harmonic).squareRoot()
            }
            state = state &* 1_664_525 &+ 1_013_904_223
            let noise = Double(Int(state >> 24) - 128) * 2
            return Int16(clamping: Int(6_000 * envelope * value + noise))
        }
    }

    /// The device encodes (as the firmware does: Opus, voice, its rate and frames); the voice-worker's
    /// path decodes at that rate and frames at 16 kHz. The result matches the device's PCM (resampled
    /// to 16 kHz the same way) to within the codec's own loss.
    @Test(arguments: [(16_000, 60), (24_000, 20), (8_000, 120), (48_000, 40)])
    func theDecodedUplinkMatchesTheDevicesPCM(sampleRate: Int, frameDuration: Int) throws {
        let format = AudioFormat(sampleRate: sampleRate, frameDurationMilliseconds: frameDuration)
        let pcm = Self.speechLike(seconds: 2, sampleRate: sampleRate)
        let packets = try OpusEncoder(format: format, bitrate: 32_000).encodeAll(pcm)
        let decoder = try OpusDecoder(format: format)
        var framer = UplinkFramer(sourceRate: sampleRate)
        var decoded: [Int16] = []
        for packet in packets {
            let samples = try decoder.decode(packet)
            #expect(samples.count == format.samplesPerFrame)
            decoded += framer.push(samples).joined()
        }
        let reference = Resampler.resample(pcm, from: sampleRate, to: 16_000)
        // Every sample arrives (but the last partial frame).
        #expect(decoded.count >= reference.count - 960 && decoded.count <= reference.count + 960)
        // Skip the codec's first 100 ms while it converges.
        let (db, lag) = AudioQuality.snr(
            reference: Array(reference.dropFirst(1_600)), decoded: Array(decoded.dropFirst(1_600)))
        // A dropped or repeated frame, a wrong rate or a byte swap gives less than 3 dB.
        let floor: Double = sampleRate == 8_000 ? 8 : 12
        #expect(db >= floor, "SNR \(db) dB at lag \(lag) for \(sampleRate) Hz, \(frameDuration) ms")
    }

    @Test func theSNRCheckCatchesADamagedPipeline() throws {
        let pcm = Self.speechLike(seconds: 2, sampleRate: 16_000)
        let packets = try OpusEncoder(format: .uplink, bitrate: 32_000).encodeAll(pcm)
        let decoder = try OpusDecoder(format: .uplink)
        // One packet in ten lost on the way.
        var decoded: [Int16] = []
        for (index, packet) in packets.enumerated() where index % 10 != 5 { decoded += try decoder.decode(packet) }
        #expect(
            AudioQuality.snr(reference: Array(pcm.dropFirst(1_600)), decoded: Array(decoded.dropFirst(1_600))).db < 3)
    }
}
