import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SwitchboardVoice

/// An OpenAI-compatible speech service (`/v1/audio/transcriptions`, `/v1/audio/speech`): OpenAI itself,
/// or any server with the same wire format (a self-hosted Whisper or TTS model behind one).
public struct OpenAISpeechConfiguration: Sendable, Equatable {
    /// Up to and including `/v1`, e.g. `https://api.openai.com/v1`.
    public var baseURL = "https://api.openai.com/v1"
    public var apiKey: String?
    public var transcriptionModel = "whisper-1"
    public var speechModel = "tts-1"
    public var speechVoice = "alloy"
    public var timeout: Duration = .seconds(30)

    public init() {}

    func url(_ path: String) -> String {
        (baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL) + path
    }
}

public struct SpeechServiceError: Error, CustomStringConvertible {
    public var status: Int
    public var message: String
    public var description: String { "speech service answered \(status): \(message)" }
}

/// Speech to text over HTTP: the utterance as a WAV file in a multipart form.
public struct OpenAITranscriber: SpeechRecognizer {
    public let configuration: OpenAISpeechConfiguration
    public let client: HTTPClient

    public init(configuration: OpenAISpeechConfiguration, client: HTTPClient) {
        self.configuration = configuration
        self.client = client
    }

    public func transcribe(_ samples: [Int16], sampleRate: Int) async throws -> String {
        let boundary = "switchboard-\(UUID().uuidString)"
        var body = ByteBuffer()
        func field(_ name: String, _ value: String) {
            body.writeString("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n")
        }
        field("model", configuration.transcriptionModel)
        field("response_format", "json")
        body.writeString(
            "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"utterance.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
        )
        body.writeBytes(WAV.encode(samples, sampleRate: sampleRate))
        body.writeString("\r\n--\(boundary)--\r\n")
        var request = HTTPClientRequest(url: configuration.url("/audio/transcriptions"))
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "multipart/form-data; boundary=\(boundary)")
        if let key = configuration.apiKey, !key.isEmpty {
            request.headers.add(name: "Authorization", value: "Bearer \(key)")
        }
        request.body = .bytes(body)
        let data = try await OpenAISpeech.send(request, client: client, timeout: configuration.timeout, limit: 1 << 20)
        struct Transcription: Decodable { var text: String }
        do {
            return try JSONDecoder().decode(Transcription.self, from: Data(data)).text.trimmingCharacters(
                in: .whitespacesAndNewlines)
        } catch {
            throw SpeechServiceError(status: 200, message: "the transcription is not JSON {\"text\": …}")
        }
    }
}

/// Text to speech over HTTP, asking for raw PCM (OpenAI's `pcm`: 24 kHz, 16-bit little-endian, mono).
public struct OpenAISynthesizer: SpeechSynthesizer {
    public let configuration: OpenAISpeechConfiguration
    public let client: HTTPClient
    static let pcmRate = 24_000

    public init(configuration: OpenAISpeechConfiguration, client: HTTPClient) {
        self.configuration = configuration
        self.client = client
    }

    public func synthesize(_ text: String, sampleRate: Int) async throws -> [Int16] {
        var request = HTTPClientRequest(url: configuration.url("/audio/speech"))
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let key = configuration.apiKey, !key.isEmpty {
            request.headers.add(name: "Authorization", value: "Bearer \(key)")
        }
        let payload: [String: String] = [
            "model": configuration.speechModel, "voice": configuration.speechVoice, "input": text,
            "response_format": "pcm",
        ]
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(payload)))
        // Ten minutes of 24 kHz audio at most: a sentence is seconds.
        let bytes = try await OpenAISpeech.send(
            request, client: client, timeout: configuration.timeout, limit: 30 << 20)
        var samples = [Int16](repeating: 0, count: bytes.count / 2)
        for index in samples.indices {
            samples[index] = Int16(bitPattern: UInt16(bytes[2 * index]) | UInt16(bytes[2 * index + 1]) << 8)
        }
        return Resampler.resample(samples, from: Self.pcmRate, to: sampleRate)
    }
}

enum OpenAISpeech {
    /// The response body of a 2xx answer; any other status throws with the service's message.
    static func send(_ request: HTTPClientRequest, client: HTTPClient, timeout: Duration, limit: Int) async throws
        -> [UInt8]
    {
        let deadline =
            NIODeadline.now()
            + .nanoseconds(
                timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
        let response = try await client.execute(request, deadline: deadline)
        let body = try await response.body.collect(upTo: limit)
        guard (200..<300).contains(Int(response.status.code)) else {
            let text = String(buffer: body)
            struct Envelope: Decodable {
                struct Inner: Decodable { var message: String }
                var error: Inner
            }
            let message =
                (try? JSONDecoder().decode(Envelope.self, from: Data(text.utf8)).error.message)
                ?? String(text.prefix(200))
            throw SpeechServiceError(status: Int(response.status.code), message: message)
        }
        return Array(buffer: body)
    }
}
