import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SwitchboardContracts

/// OpenAI's Chat Completions with `stream: true`, as served by OpenAI, vLLM, llama.cpp's server and Ollama.
public struct OpenAIProvider: ChatProvider {
    public let spec: ProviderSpec
    public let apiKey: String?
    public let client: HTTPClient

    public init(spec: ProviderSpec, apiKey: String?, client: HTTPClient) {
        self.spec = spec
        self.apiKey = apiKey
        self.client = client
    }

    public var kind: ProviderKind { .openai }

    /// The request to go on with an answer cut short (`ProviderRequest.answerSoFar`).
    static let continuation =
        "Your answer above was cut off. Continue it exactly where it stops, without repeating any of it and without mentioning the interruption."

    /// The JSON body: the role's instructions, the conversation, then the message with the team's
    /// results; with tools, their definitions and the rounds of calls the model already made.
    public func body(for request: ProviderRequest) throws -> Data {
        let names = ToolNames(request.tools)
        var messages: [WireMessage] = []
        if let system = request.systemPrompt { messages.append(WireMessage(role: "system", content: system)) }
        messages += request.history.map {
            WireMessage(role: $0.role == "assistant" ? "assistant" : "user", content: $0.content)
        }
        messages.append(WireMessage(role: "user", content: request.userTurn))
        for round in request.toolRounds {
            messages.append(
                WireMessage(
                    role: "assistant", content: round.text.isEmpty ? nil : round.text,
                    tool_calls: round.calls.map {
                        WireToolCall(
                            id: $0.id,
                            function: .init(name: $0.name, arguments: $0.arguments.isEmpty ? "{}" : $0.arguments))
                    }))
            messages += round.calls.map {
                WireMessage(role: "tool", content: round.results[$0.id] ?? "", tool_call_id: $0.id)
            }
        }
        if !request.answerSoFar.isEmpty {
            // A model cannot be made to repeat itself exactly: it is shown what the user already has and
            // asked for the rest, so the reply reads on from where it stopped.
            messages.append(WireMessage(role: "assistant", content: request.answerSoFar))
            messages.append(WireMessage(role: "user", content: Self.continuation))
        }
        let tools = zip(request.tools, names.wireNames).map { tool, name in
            WireTool(function: .init(name: name, description: tool.description, parameters: tool.inputSchema))
        }
        return try JSONEncoder().encode(
            WireBody(
                model: spec.model ?? "", messages: messages, tools: tools.isEmpty ? nil : tools,
                tool_choice: tools.isEmpty || request.mayCallTools ? nil : "none"))
    }

    struct WireBody: Encodable {
        var model: String
        var messages: [WireMessage]
        var stream = true
        var tools: [WireTool]?
        var tool_choice: String?
    }

    struct WireMessage: Encodable {
        var role: String
        /// Null in an assistant message that only calls tools.
        var content: String?
        var tool_calls: [WireToolCall]?
        var tool_call_id: String?
    }

    struct WireToolCall: Encodable {
        struct Function: Encodable {
            var name: String
            var arguments: String
        }
        var id: String
        var type = "function"
        var function: Function
    }

    struct WireTool: Encodable {
        struct Function: Encodable {
            var name: String
            var description: String
            var parameters: JSONValue
        }
        var type = "function"
        var function: Function
    }

    @discardableResult
    public func stream(_ request: ProviderRequest, onDelta: (String) async throws -> Void) async throws -> [ToolCall] {
        let base = (spec.baseURL ?? "").hasSuffix("/") ? String((spec.baseURL ?? "").dropLast()) : (spec.baseURL ?? "")
        var http = HTTPClientRequest(url: base + "/chat/completions")
        http.method = .POST
        http.headers.add(name: "Content-Type", value: "application/json")
        http.headers.add(name: "Accept", value: "text/event-stream")
        if let apiKey, !apiKey.isEmpty { http.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        http.body = .bytes(ByteBuffer(bytes: try body(for: request)))
        let timeout = TimeAmount.milliseconds(Int64((spec.timeoutSeconds ?? 120) * 1000))

        let response: HTTPClientResponse
        do {
            response = try await client.execute(http, deadline: .now() + timeout)
        } catch {
            throw Self.classify(error, connecting: true)
        }
        guard response.status == .ok else {
            let body = (try? await response.body.collect(upTo: 64 * 1024)).map { String(buffer: $0) } ?? ""
            throw ProviderError(
                .http, Self.errorMessage(in: body) ?? "HTTP \(response.status.code)", status: Int(response.status.code))
        }
        var parser = SSEParser()
        var finishReason: String?
        var toolCalls = ToolCallAccumulator()
        var iterator = response.body.makeAsyncIterator()
        while true {
            let buffer: ByteBuffer?
            do {
                buffer = try await iterator.next()
            } catch {
                throw Self.classify(error, connecting: false)
            }
            guard let buffer else { break }
            for payload in parser.feed(buffer.readableBytesView) {
                if payload == "[DONE]" { return toolCalls.toolCalls }
                let chunk: StreamChunk
                do {
                    chunk = try JSONDecoder().decode(StreamChunk.self, from: Data(payload.utf8))
                } catch {
                    throw ProviderError(.malformed, "not a chat.completion.chunk: \(payload.prefix(200))")
                }
                if let error = chunk.error { throw ProviderError(.streamError, error.message ?? "error in stream") }
                for choice in chunk.choices ?? [] {
                    if let content = choice.delta?.content, !content.isEmpty { try await onDelta(content) }
                    for piece in choice.delta?.tool_calls ?? [] { toolCalls.add(piece) }
                    if let reason = choice.finish_reason { finishReason = reason }
                }
            }
        }
        // Some servers close after the finish reason without `[DONE]`; without either the answer was cut.
        guard finishReason != nil else { throw ProviderError(.disconnected, "the stream ended before [DONE]") }
        return toolCalls.toolCalls
    }

    struct StreamChunk: Decodable {
        struct Choice: Decodable {
            struct Delta: Decodable {
                var content: String?
                var tool_calls: [ToolCallAccumulator.Piece]?
            }
            var delta: Delta?
            var finish_reason: String?
        }
        struct ErrorBody: Decodable { var message: String? }
        var choices: [Choice]?
        var error: ErrorBody?
    }

    /// `{"error": {"message": …}}`, the shape of OpenAI's (and its imitators') error bodies.
    static func errorMessage(in body: String) -> String? {
        struct Envelope: Decodable {
            struct Inner: Decodable { var message: String? }
            var error: Inner?
        }
        if let envelope = try? JSONDecoder().decode(Envelope.self, from: Data(body.utf8)),
            let message = envelope.error?.message
        {
            return message
        }
        return body.isEmpty ? nil : String(body.prefix(300))
    }

    static func classify(_ error: any Error, connecting: Bool) -> ProviderError {
        if let error = error as? ProviderError { return error }
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded, .readTimeout, .connectTimeout, .writeTimeout:
                return ProviderError(.timeout, "\(error)")
            case .remoteConnectionClosed, .cancelled:
                return ProviderError(connecting ? .connect : .disconnected, "\(error)")
            default: break
            }
        }
        return ProviderError(connecting ? .connect : .disconnected, "\(error)")
    }
}
