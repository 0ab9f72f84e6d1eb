import ArgumentParser
import Foundation
import SwitchboardContracts
import SwitchboardRuntime

#if canImport(Glibc)
    @preconcurrency import Glibc
#endif

/// Follows one user message's run through the conversation's frames: which roles work, the reply's
/// tokens, and the frame that ends the run (docs/agents.md). A plain value, fed frames one at a time.
public struct RunWatcher: Sendable {
    public enum Action: Sendable, Equatable {
        /// Text of the reply to show as it arrives.
        case reply(String)
        /// The reply began (its role), so a status line should get out of the way.
        case replyStarted(role: String)
        /// What the roles are doing now.
        case status(String)
        /// The run ended: `COLLABORATION_COMPLETE` for our message.
        case completed(Outcome)
        /// The message was refused or not answered.
        case failed(String)
    }

    public struct Outcome: Sendable, Equatable, Codable {
        /// completed, partial, failed, abandoned or stopped.
        public var status: String
        public var pattern: String?
        public var answeredBy: String?
        /// The answer, from the reply's end (or the run's result when no reply streamed).
        public var answer: String
        public var note: String?
        public var durationMs: Int?

        public init(
            status: String, pattern: String?, answeredBy: String?, answer: String, note: String?, durationMs: Int?
        ) {
            self.status = status
            self.pattern = pattern
            self.answeredBy = answeredBy
            self.answer = answer
            self.note = note
            self.durationMs = durationMs
        }
    }

    public let commandID: String
    /// The user message's id, from the `ACK` of `SEND_MESSAGE`; the run's id.
    public private(set) var messageID: String?
    /// Our run has begun: a conversation's runs take turns, so the role steps seen from now until our
    /// run completes are our run's (ROLE_STATUS_CHANGE names no run).
    private var runBegan = false
    private var replyID: String?
    private var streamed = ""
    private var roles: [(name: String, status: String)] = []
    private var progress: Int?
    private var stage: String?

    public init(commandID: String) {
        self.commandID = commandID
    }

    public mutating func receive(_ frame: ServerFrame) -> [Action] {
        if frame.correlationId == commandID {
            if frame.type == "ERROR" || frame.status == .error {
                return [
                    .failed(
                        "the gateway refused the message: \(frame.error?.code ?? "ERROR") \(frame.error?.message ?? "")"
                    )
                ]
            }
            messageID = (try? frame.data.decode(as: MessageAck.self))?.messageId
            return [.status("sent; waiting for the team…")]
        }
        // The snapshot comes with the subscription, before the message is even sent.
        if let snapshot = frame.payload(RoleStatusSnapshot.self) {
            roles = snapshot.roles.map { ($0.role, $0.status) }
            return []
        }
        guard let messageID else { return [] }
        if let start = frame.payload(CollaborationStart.self), start.runId == messageID {
            runBegan = true
        } else if let progress = frame.payload(CollaborationProgress.self), progress.runId == messageID {
            runBegan = true
            self.progress = progress.progress
            stage = progress.currentStage
            return [.status(statusLine)]
        } else if let change = frame.payload(RoleStatusChange.self), runBegan {
            if let index = roles.firstIndex(where: { $0.name == change.role }) {
                roles[index].status = change.status
            } else {
                roles.append((change.role, change.status))
            }
            return [.status(statusLine)]
        } else if let start = frame.payload(MessageStreamStart.self), start.inReplyTo == messageID {
            replyID = start.messageId
            return [.replyStarted(role: start.role)]
        } else if let chunk = frame.payload(FallbackReplyChunk.self), replyID != nil, chunk.messageId == replyID {
            streamed += chunk.chunk
            return [.reply(chunk.chunk)]
        } else if let end = frame.payload(MessageStreamEnd.self), replyID != nil, end.messageId == replyID {
            // Whatever the chunks missed (none, normally): the end carries the whole reply.
            let content = end.finalMessage.content
            guard content.hasPrefix(streamed), content.count > streamed.count else { return [] }
            let rest = String(content.dropFirst(streamed.count))
            streamed = content
            return [.reply(rest)]
        } else if let rejected = frame.payload(MessageRejected.self), rejected.messageId == messageID {
            let why =
                switch rejected.reason {
                case "busy": "the conversation is busy with run \(rejected.runId ?? "?")"
                case "duplicate": "it repeats message \(rejected.duplicateOf ?? "?") (the same client message id)"
                case "queue_full":
                    "the conversation's queue is full (\(rejected.limit.map(String.init) ?? "?") waiting)"
                default: "it was refused (\(rejected.reason))"
                }
            return [.failed("\(why); the message was not answered")]
        } else if let complete = frame.payload(CollaborationComplete.self), complete.runId == messageID {
            runBegan = false
            let result = complete.result
            let answer = streamed.isEmpty ? result.answer : streamed
            var actions: [Action] = []
            if streamed.isEmpty, !answer.isEmpty { actions.append(.reply(answer)) }
            actions.append(
                .completed(
                    Outcome(
                        status: result.status, pattern: complete.pattern.rawValue, answeredBy: result.answeredBy,
                        answer: answer, note: result.note.isEmpty ? nil : result.note, durationMs: complete.duration)))
            return actions
        }
        return []
    }

    /// `45% ai_processing · Alex RESPONDING · Kulu THINKING`: the roles not idle, and how far the run is.
    public var statusLine: String {
        var parts: [String] = []
        if let progress { parts.append("\(progress)%" + (stage.map { " \($0)" } ?? "")) }
        let busy = roles.filter { $0.status != "IDLE" }.map { "\($0.name) \($0.status)" }
        parts.append(busy.isEmpty ? "waiting for the roles" : busy.joined(separator: " · "))
        return parts.joined(separator: " · ")
    }
}

/// A development token for `user`: the secret from the flag, else SWITCHBOARD_JWT_SECRET, else the
/// development default (as `switchboard token` does).
func developmentToken(user: String, secret: String?, lifetime: Duration = .seconds(86_400)) async throws -> String {
    let secret = try setting(secret, environment: "JWT_SECRET", default: SwitchboardConfiguration.developmentSecret)
    return try await TokenAuthority(secret: secret).mint(user: user, lifetime: lifetime)
}

struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send", abstract: "Send a message and stream the team's answer.",
        discussion: "Exits 1 when the message is refused, the run fails, or nothing arrives for --idle-timeout seconds."
    )

    @Argument(help: "The message (words are joined with spaces).") var words: [String]
    @Option(help: "The gateway's WebSocket URL (env SWITCHBOARD_GATEWAY_URL).") var gateway: String?
    @Option(help: "The conversation (default: a new one).") var conversation: String?
    @Option(help: "Collaboration pattern: direct, sequential, parallel, hierarchical or dynamic.") var pattern: String?
    @Option(help: "A token to connect with (default: mint one for --user).") var token: String?
    @Option(help: "The user a minted token names.") var user = "cli"
    @Option(help: "HS256 secret for minting (env SWITCHBOARD_JWT_SECRET; default: the development secret).")
    var secret: String?
    @Option(help: "Give up when no frame arrives for this many seconds.") var idleTimeout: Double = 60
    @Flag(help: "Print every frame as one line of JSON instead of the answer.") var json = false

    static let patterns: Set<String> = ["direct", "sequential", "parallel", "hierarchical", "dynamic"]

    func validate() throws {
        let content = words.joined(separator: " ")
        guard !content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ValidationError("the message is empty")
        }
        guard content.count <= 10_000 else { throw ValidationError("the message is longer than 10 000 characters") }
        if let pattern, !Self.patterns.contains(pattern) {
            throw ValidationError("--pattern must be one of \(Self.patterns.sorted().joined(separator: ", "))")
        }
        guard idleTimeout > 0 else { throw ValidationError("--idle-timeout must be positive") }
    }

    func run() async throws {
        let gateway = try setting(gateway, environment: "GATEWAY_URL", default: "ws://127.0.0.1:8080/ws")
        var token = self.token
        if token == nil { token = try await developmentToken(user: user, secret: secret) }
        let conversation = self.conversation ?? "cli-\(UUID().uuidString.prefix(8).lowercased())"
        let send = try ClientCommand(
            id: "send-\(UUID().uuidString.prefix(8).lowercased())",
            payload: SendMessage(conversationId: conversation, content: words.joined(separator: " "), pattern: pattern))
        let subscribe = try ClientCommand(
            id: "subscribe", payload: SubscribeConversation(conversationId: conversation))
        let json = self.json
        let idleSeconds = idleTimeout
        let idle = Duration.milliseconds(Int64(idleSeconds * 1000))
        let standardOutputIsTerminal = isatty(STDOUT_FILENO) != 0

        let outcome = try await LiveStatus.with(mode: .forStandardError(json: json)) { status -> RunWatcher.Outcome in
            status.update("connecting to \(gateway)…")
            let (result, closeCode) = try await ChatClient.withConnection(url: gateway, token: token) {
                client -> Result<RunWatcher.Outcome, SendError> in
                var watcher = RunWatcher(commandID: send.id)
                client.send(subscribe)
                var subscribed = false
                var sent = false
                var replying = false
                while let received = await client.frames.next(within: idle) {
                    let frame = received.frame
                    if json { print(try JSONLines.encode(frame)) }
                    // Subscribe first, so the role snapshot and every event of the run are seen.
                    if frame.correlationId == subscribe.id {
                        guard frame.type == "ACK" else {
                            return .failure(
                                SendError("could not follow \(conversation): \(frame.error?.message ?? frame.type)"))
                        }
                        subscribed = true
                    }
                    if subscribed, !sent {
                        client.send(send)
                        sent = true
                        status.update("sent to \(conversation); waiting for the team…")
                    }
                    for action in watcher.receive(frame) {
                        switch action {
                        case .status(let line):
                            if !replying { status.update(line) }
                        case .replyStarted:
                            // The reply takes over the terminal: a status line redrawn under it would tear it.
                            if standardOutputIsTerminal {
                                replying = true
                                status.clear()
                            }
                        case .reply(let text) where !json:
                            if standardOutputIsTerminal { status.clear() }
                            print(text, terminator: "")
                            fflush(nil)  // every stream: naming `stdout` is not concurrency-safe
                        case .reply: break
                        case .completed(let outcome):
                            if !json, !outcome.answer.isEmpty { print("") }
                            return .success(outcome)
                        case .failed(let message): return .failure(SendError(message))
                        }
                    }
                }
                return .failure(
                    SendError(
                        client.frames.isFinished
                            ? "the gateway closed the connection" : "no frame for \(idleSeconds) s; giving up"))
            }
            guard let result else {
                throw SendError(
                    "the connection closed (code \(closeCode.map(String.init) ?? "none")) before the run ended")
            }
            return try result.get()
        }
        if !json {
            var summary = "— \(outcome.status)"
            if let answeredBy = outcome.answeredBy { summary += " · answered by \(answeredBy)" }
            if let pattern = outcome.pattern { summary += " · \(pattern)" }
            if let duration = outcome.durationMs { summary += String(format: " · %.1f s", Double(duration) / 1000) }
            if let note = outcome.note { summary += " · \(note)" }
            writeStandardError(summary + "\n")
        }
        guard outcome.status == "completed" || outcome.status == "partial" else {
            writeStandardError("switchboard: the run ended \(outcome.status)\n")
            throw ExitCode(1)
        }
    }
}

/// Why `send` gave up; printed as the command's error.
struct SendError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
