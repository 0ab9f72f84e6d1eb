/// A Kafka topic of Switchboard and what flows through it.
public struct TopicSpec: Sendable, Hashable {
    public var name: String
    public var partitions: Int
    public var purpose: String

    public init(name: String, partitions: Int, purpose: String) {
        self.name = name
        self.partitions = partitions
        self.purpose = purpose
    }

    /// Where a message that its handler can never accept goes, with the error in its headers.
    public var deadLetter: TopicSpec {
        TopicSpec(name: Self.deadLetterName(of: name), partitions: 1, purpose: "dead letters of \(name)")
    }

    /// The dead-letter topic of the topic named `topic`.
    public static func deadLetterName(of topic: String) -> String { topic + deadLetterSuffix }

    /// The topic a dead-letter topic collects for, or nil when `topic` is not one.
    public static func origin(ofDeadLetter topic: String) -> String? {
        topic.hasSuffix(deadLetterSuffix) ? String(topic.dropLast(deadLetterSuffix.count)) : nil
    }

    private static let deadLetterSuffix = ".dlq"
}

/// The one place topic names and partition counts live (docs/topics.md mirrors this table).
/// Every message's key is its routing key, so all events of one conversation, device session or
/// workflow run stay on one partition and in order.
public enum Topics {
    public static let chatRequests = TopicSpec(
        name: "sb.chat.requests", partitions: 8,
        purpose: "user messages accepted by a gateway; consumed by the orchestrator")
    public static let agentTasks = TopicSpec(
        name: "sb.agent.tasks", partitions: 8,
        purpose: "work for one AI role; consumed by agent-workers")
    public static let agentResults = TopicSpec(
        name: "sb.agent.results", partitions: 8,
        purpose: "a role finished or failed the orchestrator's task, with its text; consumed by the orchestrator")
    public static let clientEvents = TopicSpec(
        name: "sb.client.events", partitions: 8,
        purpose: "everything a client should see; consumed by the notifier, which fans out through Redis")
    public static let voiceUplink = TopicSpec(
        name: "sb.voice.uplink", partitions: 8,
        purpose: "device audio and listen commands keyed by device session; consumed by voice-workers")
    public static let workflowCommands = TopicSpec(
        name: "sb.workflow.commands", partitions: 8,
        purpose:
            "workflow runs, their controls and their llm nodes' results keyed by run id; consumed by workflow-runners")

    public static let all: [TopicSpec] = [
        chatRequests, agentTasks, agentResults, clientEvents, voiceUplink, workflowCommands,
    ]

    /// The topic of Switchboard's named `name`.
    public static func named(_ name: String) -> TopicSpec? { all.first { $0.name == name } }
}

/// Kafka consumer group ids: every instance of a worker kind joins its kind's group.
public enum ConsumerGroups {
    public static let orchestrator = "sb-orchestrator"
    public static let agentWorker = "sb-agent-worker"
    public static let notifier = "sb-notifier"
    public static let voiceWorker = "sb-voice-worker"
    public static let workflowRunner = "sb-workflow-runner"
    /// The persistence consumer (inside the notifier): writes history to PostgreSQL.
    public static let history = "sb-history"

    /// Each group with the topics its members subscribe to and how soon it must see a new message: the
    /// services build their consumers from it, and `switchboard status` measures the groups' lag over it.
    public static let subscriptions: [(group: String, topics: [TopicSpec], latency: FetchLatency)] = [
        (orchestrator, [Topics.chatRequests, Topics.agentResults], .interactive),
        (agentWorker, [Topics.agentTasks], .interactive),
        (notifier, [Topics.clientEvents], .interactive),
        (history, [Topics.chatRequests, Topics.clientEvents], .background),
        (voiceWorker, [Topics.voiceUplink], .steady),
        (workflowRunner, [Topics.workflowCommands], .steady),
    ]

    /// How soon `group` must see a new message.
    public static func latency(of group: String) -> FetchLatency {
        subscriptions.first { $0.group == group }?.latency ?? .interactive
    }

    /// The topics `group` subscribes to.
    public static func topics(of group: String) -> [TopicSpec] {
        subscriptions.first { $0.group == group }?.topics ?? []
    }
}

/// How long a consumer group may leave a new message at the broker. Every consumer keeps one fetch
/// waiting at the broker, which answers it when its wait ends, so the wait is both the group's latency
/// floor per hop when idle and what an idle stack costs the broker (docs/configuration.md).
public enum FetchLatency: String, Sendable {
    /// A chat user waits on every hop: their message, the roles' tasks, tokens on their way to a socket.
    case interactive
    /// Someone waits, but not on each hop: device audio streams in continuously while a device speaks
    /// (fetches find data and answer at once), workflow nodes take seconds.
    case steady
    /// Nobody waits on it: history rows, dead letters.
    case background
}

/// Kafka header names that repeat envelope fields so tools can filter without parsing JSON.
public enum BusHeaders {
    public static let type = "sb-type"
    public static let traceparent = "traceparent"
}
