import Foundation

/// The one place Redis key names live, as `Topics` is for Kafka topics (docs/keyspace.md lists each
/// key's owner, type and TTL).
///
/// Every key is `sb:{<kind>:<id>}:<name>`. The braces are a Redis Cluster hash tag: all keys of one
/// conversation, device, user, task or run hash to one slot, so a script or transaction may touch
/// several of them (a multi-key script keeps its keys in one tag). A key of the whole cluster has a
/// tag of its own (`sb:{gateways}`), so the cluster's keys spread over the slots.
public enum Keyspace {
    static func key(_ kind: String, _ id: String, _ name: String) -> String { "sb:{\(kind):\(id)}:\(name)" }
    static func clusterKey(_ tag: String, _ name: String? = nil) -> String {
        name.map { "sb:{\(tag)}:\($0)" } ?? "sb:{\(tag)}"
    }

    /// A conversation's keys: the same tag as its client channel (`{conversation:<id>}`).
    public enum Conversation {
        /// The orchestrator's record of the conversation's collaboration (a hash: version and JSON).
        public static func record(_ id: String) -> String { key("conversation", id, "run") }
        /// Per input event, the effects decided but not yet all published; one script writes it with the record.
        public static func outbox(_ id: String) -> String { key("conversation", id, "outbox") }
        /// The user who owns the conversation (a cache of PostgreSQL's session row).
        public static func owner(_ id: String) -> String { key("conversation", id, "owner") }
        /// The other users who may use the conversation (a set).
        public static func members(_ id: String) -> String { key("conversation", id, "members") }
        /// Each role's state (a hash: role → status), moved only by `RoleStateStore`'s script.
        public static func roles(_ id: String) -> String { key("conversation", id, "roles") }
    }

    /// A client channel's keys, tagged with the channel (`{conversation:c1}`, `{user:u1}`, `{system:all}`),
    /// so the notifier's publish script touches one slot.
    public enum ClientChannel {
        /// The pub/sub channel gateways follow (`ChannelWire` messages). Its hash tag makes it a shard
        /// channel in a Redis Cluster (SPUBLISH/SSUBSCRIBE on the shard of the channel's keys).
        public static func live(_ channel: Channel) -> String { key(channel.kind.rawValue, channel.id, "live") }
        /// The capped stream clients recover from by offset.
        public static func stream(_ channel: Channel) -> String { key(channel.kind.rawValue, channel.id, "stream") }
        /// The channel's epoch and newest offset (a hash).
        public static func meta(_ channel: Channel) -> String { key(channel.kind.rawValue, channel.id, "meta") }
        /// Marks an event id published, so a Kafka redelivery is not published twice.
        public static func seen(_ channel: Channel, eventID: UUID) -> String {
            key(channel.kind.rawValue, channel.id, "seen:\(eventID.uuidString.lowercased())")
        }
    }

    /// A xiaozhi device's keys.
    public enum Device {
        /// JSON `DeviceBinding`.
        public static func binding(_ device: String) -> String { key("device", device, "binding") }
        /// Bumped on unbind, revoking every grant of the earlier binding; survives the unbind.
        public static func generation(_ device: String) -> String { key("device", device, "generation") }
        /// JSON `PendingActivation`, expiring with its code.
        public static func activation(_ device: String) -> String { key("device", device, "activation") }
        /// `<gateway> <session>` while the device is connected.
        public static func live(_ device: String) -> String { key("device", device, "live") }
        /// JSON `VoiceTurnTiming`: how long each stage of the device's last answered turn took.
        public static func lastTurn(_ device: String) -> String { key("device", device, "last-turn") }
        /// An activation code → the device showing it (claimed with SET NX).
        public static func activationCode(_ code: String) -> String { key("activation", code, "device") }
        /// The OTA token bucket of one client address.
        public static func otaRate(address: String) -> String { key("ota", address, "rate") }
    }

    /// A user's keys.
    public enum User {
        /// The user's bound devices (a set).
        public static func devices(_ user: String) -> String { key("user", user, "devices") }
        /// The token bucket of binding attempts.
        public static func bindRate(_ user: String) -> String { key("user", user, "bind-rate") }
        /// The token bucket of client commands.
        public static func commandRate(_ user: String) -> String { key("user", user, "rate") }
        /// The user's connections on every gateway (a sorted set scored by expiry).
        public static func connections(_ user: String) -> String { key("user", user, "conns") }
        /// One connection's gateway and channels (a hash).
        public static func connection(_ user: String, connectionID: String) -> String {
            key("user", user, "conn:\(connectionID)")
        }
        /// Where a Bisheng chat's sockets left off (`<epoch>:<offset>`, or "start").
        public static func bishengSeen(_ user: String, chatID: String) -> String {
            key("user", user, "bisheng:\(chatID):seen")
        }
        /// The user's workflow runs (a sorted set scored by start).
        public static func workflowRuns(_ user: String) -> String { key("user", user, "wf-runs") }
        /// The user's runs not yet ended (a set), for the concurrency limit.
        public static func activeWorkflowRuns(_ user: String) -> String { key("user", user, "wf-active") }
        /// A workflow WebSocket session's workflow ids and their runs (a hash).
        public static func workflowSession(_ user: String, sessionID: String) -> String {
            key("user", user, "wf-session:\(sessionID):runs")
        }
        /// The user's open workflow sockets (a sorted set scored by expiry).
        public static func workflowSockets(_ user: String) -> String { key("user", user, "wf-sockets") }
    }

    /// An agent task's journal, in one tag so each of its scripts touches one slot.
    public enum Task {
        /// The attempt running the task (a random token).
        public static func lease(_ task: String) -> String { key("task", task, "lease") }
        /// The answer's chunks, each appended before it is sent (a list).
        public static func chunks(_ task: String) -> String { key("task", task, "chunks") }
        /// Set with the last chunk when the model's answer was complete.
        public static func generated(_ task: String) -> String { key("task", task, "generated") }
        /// Set once the task's result is on the bus, to that time (epoch milliseconds).
        public static func done(_ task: String) -> String { key("task", task, "done") }
    }

    /// A collaboration run's keys.
    public enum Run {
        /// Set when the run was stopped; agent-workers check it when a task starts.
        public static func stopped(_ runID: String) -> String { key("run", runID, "stopped") }
    }

    /// A workflow run's keys: the same tag as its client channel (`{workflow:<run id>}`); a workflow
    /// socket's entry has a tag of its own.
    public enum Workflow {
        /// The run's record (JSON `WorkflowRunRecord`).
        public static func record(_ runID: String) -> String { key("workflow", runID, "run") }
        /// The run's node checkpoints (a hash: node → JSON `NodeCheckpoint`).
        public static func nodes(_ runID: String) -> String { key("workflow", runID, "nodes") }
        /// How often each node completed (a hash): the proof that no node ran twice to completion.
        public static func completions(_ runID: String) -> String { key("workflow", runID, "completions") }
        /// How many times the run was started or resumed by a runner.
        public static func executions(_ runID: String) -> String { key("workflow", runID, "executions") }
        /// One open workflow socket as its JSON line for `GET /api/connections`.
        public static func socket(_ connectionID: String) -> String { key("wf-socket", connectionID, "entry") }
    }

    /// A voice session's routing-table entry (a hash written by its gateway, see `VoiceRouteStore`).
    public enum Voice {
        public static func route(_ session: String) -> String { key("voice", session, "gateway") }
    }

    /// A cluster-wide connection pool of one kind (a sorted set scored by expiry).
    public static func connectionPool(_ pool: String) -> String { key("pool", pool, "conns") }

    /// Keys of the whole cluster, each under its own tag.
    public enum Cluster {
        /// Each gateway's connection count and last heartbeat (a hash).
        public static let gateways = clusterKey("gateways")
        /// Each service instance's heartbeat (a hash: instance → `<service> <ready> <time>`).
        public static let services = clusterKey("services")
        /// An operator's maintenance message (`SET 'sb:{maintenance}' "upgrading Kafka"`).
        public static let maintenance = clusterKey("maintenance")
        /// The notifier instance publishing SYSTEM_STATUS (a lease).
        public static let systemStatusPublisher = clusterKey("system-status", "publisher")
        /// The SYSTEM_STATUS last published.
        public static let systemStatusLast = clusterKey("system-status", "last")
        /// The team card the orchestrator loaded (JSON `TeamCard`).
        public static let team = clusterKey("team")
        /// Every open workflow socket (a sorted set scored by expiry).
        public static let workflowSockets = clusterKey("wf-sockets")
    }

    /// Pub/sub channels. They are not keys; they are here so each name has one source.
    public enum PubSub {
        /// Run ids of stopped collaboration runs; every agent-worker follows it. No tag: a PUBLISH reaches
        /// the whole cluster.
        public static let runStops = "sb:runs:stop"

        // Channels addressed to one instance carry a tag, so in a cluster they are shard channels
        // (SPUBLISH/SSUBSCRIBE): the publisher's count of receivers is then the listener's, which a
        // cluster-wide PUBLISH counts on one node only. A count of 0 tells the publisher its listener is
        // not subscribed (yet): it resubscribes after a Redis restart, or it is gone.

        /// The voice downlink of one gateway instance (`VoiceDownlink` items).
        public static func voiceDownlink(gateway: String) -> String { "sb:{gateway:\(gateway)}:voice-downlink" }
        /// Device tool calls for the devices one gateway instance holds (JSON `DeviceToolCall`).
        public static func deviceToolCalls(gateway: String) -> String { "sb:{gateway:\(gateway)}:device-tool-calls" }
        /// Outcomes of one calling process's device tool calls (JSON `DeviceToolResult`).
        public static func deviceToolResults(instance: String) -> String {
            "sb:{instance:\(instance)}:device-tool-results"
        }

        /// The names the release before this one published to a gateway; gateways follow them too, so
        /// voice-workers and agent-workers of that release keep reaching upgraded gateways
        /// (docs/deployment.md#upgrading). Remove in the release after.
        public enum PreviousRelease {
            public static func voiceDownlink(gateway: String) -> String { "sb:voice:downlink:\(gateway)" }
            public static func deviceToolCalls(gateway: String) -> String { "sb:device-tools:calls:\(gateway)" }
        }
    }
}
