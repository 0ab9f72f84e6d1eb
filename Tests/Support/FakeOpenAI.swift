import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// An OpenAI-compatible server on a real socket that speaks Chat Completions' exact SSE wire format,
/// with its failure modes on separate paths: `/<scenario>/v1/chat/completions`.
///
/// Scenarios: `ok` (streams `deltas`), `flaky` (429, then 500, then ok), `broken` (always 500),
/// `unauthorized` (401), `cut` (two deltas, then the connection drops), `instream-error` (an error
/// object inside the stream), `stall` (one delta, then only SSE comments until the client leaves),
/// `tools` (a model that calls the tools it is offered: `toolTurn`).
public final class FakeOpenAI: Sendable {
    public let calls = Locked<[String: Int]>([:])
    public let bodies = Locked<[String]>([])
    public let authorizations = Locked<[String]>([])
    public static let deltas = ["Hel", "lo", ", 世", "界 ", "👨‍👩", "‍👧", " done."]

    public init() {}

    public func count(_ scenario: String) -> Int { calls.withLock { $0[scenario, default: 0] } }

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.post("/:scenario/v1/chat/completions") { request, context -> Response in
            let scenario = context.parameters.get("scenario") ?? ""
            let call = self.calls.withLock { calls -> Int in
                calls[scenario, default: 0] += 1
                return calls[scenario]!
            }
            let body = try await request.body.collect(upTo: 1 << 20)
            self.bodies.withLock { $0.append(String(buffer: body)) }
            self.authorizations.withLock { $0.append(request.headers[.authorization] ?? "") }
            switch scenario {
            case "flaky" where call == 1:
                return Self.error(.tooManyRequests, "Rate limit reached for requests")
            case "flaky" where call == 2, "broken":
                return Self.error(.internalServerError, "The server had an error while processing your request.")
            case "unauthorized":
                return Self.error(.unauthorized, "Incorrect API key provided: sk-bad.")
            case "cut":
                return Self.stream(Array(Self.deltas.prefix(2)), then: .fail)
            case "stall":
                return Self.stream(Array(Self.deltas.prefix(1)), then: .stall)
            case "tools":
                return try Self.toolTurn(Data(Array(buffer: body)))
            case "instream-error":
                return Response(
                    status: .ok, headers: [.contentType: "text/event-stream"],
                    body: ResponseBody(
                        byteBuffer: ByteBuffer(
                            string: #"data: {"error":{"message":"model overloaded","type":"server_error"}}"# + "\n\n")))
            default:
                return Self.stream(Self.deltas, then: .finish)
            }
        }
        addSpeechRoutes(to: router)
        addEgressRoutes(to: router)
        return router
    }

    /// What `/v1/audio/transcriptions` answers for any audio.
    public static let transcription = "turn on the light"

    /// The audio endpoints: `/<scenario>/v1/audio/transcriptions` (multipart with a WAV file; answers
    /// `transcription`) and `/<scenario>/v1/audio/speech` (JSON; answers 24 kHz PCM, 100 ms of tone per
    /// word). Scenario `unauthorized` answers 401 like the chat route.
    func addSpeechRoutes(to router: Router<BasicRequestContext>) {
        router.post("/:scenario/v1/audio/transcriptions") { request, context -> Response in
            let scenario = context.parameters.get("scenario") ?? ""
            self.calls.withLock { $0["transcriptions", default: 0] += 1 }
            self.authorizations.withLock { $0.append(request.headers[.authorization] ?? "") }
            let body = try await request.body.collect(upTo: 16 << 20)
            let bytes = Array(buffer: body)
            let text = String(decoding: bytes, as: UTF8.self)
            self.bodies.withLock { $0.append(String(text.prefix(400))) }
            if scenario == "unauthorized" { return Self.error(.unauthorized, "Incorrect API key provided: sk-bad.") }
            guard let contentType = request.headers[.contentType],
                contentType.hasPrefix("multipart/form-data; boundary="),
                text.contains("name=\"model\""), text.contains("filename=\"utterance.wav\""),
                bytes.firstRange(of: Array("RIFF".utf8)) != nil, bytes.firstRange(of: Array("WAVEfmt ".utf8)) != nil
            else { return Self.error(.badRequest, "expected a multipart form with model and a WAV file") }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"text":"\#(Self.transcription)"}"#)))
        }
        router.post("/:scenario/v1/audio/speech") { request, context -> Response in
            let scenario = context.parameters.get("scenario") ?? ""
            self.calls.withLock { $0["speech", default: 0] += 1 }
            let body = try await request.body.collect(upTo: 1 << 20)
            self.bodies.withLock { $0.append(String(buffer: body)) }
            if scenario == "unauthorized" { return Self.error(.unauthorized, "Incorrect API key provided: sk-bad.") }
            struct Speech: Decodable {
                var model: String
                var input: String
                var voice: String
                var response_format: String?
            }
            guard let speech = try? JSONDecoder().decode(Speech.self, from: Data(Array(buffer: body))),
                speech.response_format == "pcm"
            else {
                return Self.error(.badRequest, "expected {model, input, voice, response_format: pcm}")
            }
            let words = speech.input.split(separator: " ").count
            var pcm = ByteBuffer()
            for index in 0..<(2400 * words) {
                let sample = Int16(8000 * sin(2 * Double.pi * 220 * Double(index) / 24_000))
                pcm.writeInteger(sample, endianness: .little)
            }
            return Response(status: .ok, headers: [.contentType: "audio/pcm"], body: ResponseBody(byteBuffer: pcm))
        }
    }

    /// Runs the server on a free loopback port for the duration of `body`.
    public func withServer<T: Sendable>(_ body: @escaping @Sendable (Int) async throws -> T) async throws -> T {
        try await LocalHTTPServer.withServer(router: router(), label: "fake-openai", body)
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        let json = #"{"error":{"message":"\#(message)","type":"server_error","param":null,"code":null}}"#
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: json)))
    }

    struct Cut: Error {}
    enum Ending { case finish, fail, stall }

    static func chunk(_ delta: String, finish: String?) throws -> ByteBuffer {
        try chunk(delta: delta.isEmpty ? ["role": "assistant"] : ["content": delta], finish: finish)
    }

    static func chunk(delta: [String: Any], finish: String?) throws -> ByteBuffer {
        var choice: [String: Any] = ["index": 0, "delta": delta]
        choice["finish_reason"] = finish ?? NSNull()
        let object: [String: Any] = [
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "fake",
            "choices": [choice],
        ]
        let json = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        return ByteBuffer(string: "data: \(json)\n\n")
    }

    /// Scenario `tools`, a model with function calling, decided by a rule so tests know what to expect:
    /// after tool results it answers from them ("The device answered: <results>."); otherwise it calls
    /// the offered function with the most words of its name (`self` aside, at least two) in the user's
    /// last message, its integer and number parameters set to the message's first number and its
    /// booleans to true, streamed as OpenAI streams `tool_calls` (id and name first, then the arguments
    /// in pieces, `finish_reason: tool_calls`); no such function: `noToolAnswer`.
    public static let noToolAnswer = ["Nothing ", "for ", "the ", "device ", "to ", "do."]

    static func toolTurn(_ body: Data) throws -> Response {
        let request = try JSONSerialization.jsonObject(with: body) as? [String: Any] ?? [:]
        let messages = request["messages"] as? [[String: Any]] ?? []
        guard !messages.isEmpty else { return stream(noToolAnswer, then: .finish) }
        let lastUser = messages.lastIndex { $0["role"] as? String == "user" } ?? 0
        let results = messages[lastUser...].filter { $0["role"] as? String == "tool" }.compactMap {
            $0["content"] as? String
        }
        if !results.isEmpty {
            let answer = "The device answered: \(results.joined(separator: "; "))."
            return stream(answer.split(separator: " ").map { "\($0) " }, then: .finish)
        }
        let heard = (messages[lastUser]["content"] as? String ?? "").lowercased().split { !$0.isLetter && !$0.isNumber }
            .map(String.init)
        let functions = (request["tools"] as? [[String: Any]] ?? []).compactMap { $0["function"] as? [String: Any] }
        let scored = functions.map { function -> (function: [String: Any], score: Int) in
            let words = (function["name"] as? String ?? "").lowercased().split(separator: "_").map(String.init).filter {
                $0 != "self"
            }
            return (function, words.filter(heard.contains).count)
        }
        guard let best = scored.max(by: { $0.score < $1.score }), best.score >= 2 else {
            return stream(noToolAnswer, then: .finish)
        }
        let number = heard.lazy.compactMap { Int($0) }.first
        var arguments: [String: Any] = [:]
        let properties =
            (best.function["parameters"] as? [String: Any])?["properties"] as? [String: [String: Any]] ?? [:]
        for (name, schema) in properties {
            switch schema["type"] as? String {
            case "integer", "number": if let number { arguments[name] = number }
            case "boolean": arguments[name] = true
            default: break
            }
        }
        let json = String(
            decoding: try JSONSerialization.data(withJSONObject: arguments, options: .sortedKeys), as: UTF8.self)
        var pieces: [[String: Any]] = [
            [
                "index": 0, "id": "call_\(UUID().uuidString.prefix(8))", "type": "function",
                "function": ["name": best.function["name"] as? String ?? "", "arguments": ""],
            ]
        ]
        var rest = Substring(json)
        while !rest.isEmpty {
            pieces.append(["index": 0, "function": ["arguments": String(rest.prefix(4))]])
            rest = rest.dropFirst(4)
        }
        let chunks = try pieces.map { try chunk(delta: ["tool_calls": [$0]], finish: nil) }
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                try await writer.write(try chunk("", finish: nil))
                for chunk in chunks {
                    try await writer.write(chunk)
                    try await Task.sleep(for: .milliseconds(5))
                }
                try await writer.write(try chunk(delta: [:], finish: "tool_calls"))
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            })
    }

    static func stream(_ deltas: [String], then ending: Ending) -> Response {
        Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                try await writer.write(try chunk("", finish: nil))
                for delta in deltas {
                    try await writer.write(try chunk(delta, finish: nil))
                    try await Task.sleep(for: .milliseconds(5))
                }
                switch ending {
                case .fail:
                    throw Cut()
                case .stall:
                    // Alive but silent: comments keep read timeouts away; a write fails once the client leaves.
                    for _ in 0..<600 {
                        try await Task.sleep(for: .milliseconds(100))
                        try await writer.write(ByteBuffer(string: ": waiting\n\n"))
                    }
                    throw Cut()
                case .finish:
                    try await writer.write(try chunk("", finish: "stop"))
                    try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                    try await writer.finish(nil)
                }
            })
    }
}
