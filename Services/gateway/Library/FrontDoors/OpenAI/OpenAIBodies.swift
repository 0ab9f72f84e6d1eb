import Foundation
import SwitchboardContracts

// The bodies of the OpenAI-compatible routes, in OpenAI's own shapes (snake_case; `null` where OpenAI
// sends null rather than leaving the key out).

/// `GET /v1/models`.
struct ModelList: Encodable, Equatable {
    struct Model: Encodable, Equatable {
        var id: String
        var object = "model"
        var created = 0
        var ownedBy = "switchboard"

        enum CodingKeys: String, CodingKey {
            case id, object, created, ownedBy = "owned_by"
        }
    }

    var object = "list"
    var data: [Model]
}

/// An error: `{"error": {"message", "type", "param", "code"}}`.
struct OpenAIErrorBody: Encodable, Equatable {
    struct Detail: Encodable, Equatable {
        var message: String
        var type: String
        @ExplicitNull var param: String?
        @ExplicitNull var code: String?
    }

    var error: Detail

    init(_ message: String, type: String, param: String?, code: String?) {
        error = Detail(message: message, type: type, param: param, code: code)
    }
}

/// Token counts (`TokenEstimate`).
struct CompletionUsage: Encodable, Equatable {
    var promptTokens: Int
    var completionTokens: Int
    var totalTokens: Int

    init(prompt: Int, completion: Int) {
        promptTokens = prompt
        completionTokens = completion
        totalTokens = prompt + completion
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
    }
}

/// One `chat.completion.chunk` of a streamed answer.
struct CompletionChunk: Encodable, Equatable {
    struct Delta: Encodable, Equatable {
        var role: String?
        var content: String?
    }

    struct Choice: Encodable, Equatable {
        var index = 0
        var delta: Delta
        @ExplicitNull var finishReason: String?

        enum CodingKeys: String, CodingKey {
            case index, delta, finishReason = "finish_reason"
        }
    }

    var id: String
    var object = "chat.completion.chunk"
    var created: Int
    var model: String
    var choices: [Choice]
    /// Left out without include_usage; with it, `null` on every chunk but the last, which carries the
    /// counts (and no choice). Hence an optional of an optional.
    var usage: CompletionUsage??
}

/// The `chat.completion` object of an answer that was not streamed.
struct Completion: Encodable, Equatable {
    struct Message: Encodable, Equatable {
        var role = "assistant"
        var content: String
    }

    struct Choice: Encodable, Equatable {
        var index = 0
        var message: Message
        var finishReason = "stop"
        var logprobs = JSONValue.null

        enum CodingKeys: String, CodingKey {
            case index, message, finishReason = "finish_reason", logprobs
        }
    }

    var id: String
    var object = "chat.completion"
    var created: Int
    var model: String
    var choices: [Choice]
    var usage: CompletionUsage
}
