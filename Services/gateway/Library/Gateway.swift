import ArgumentParser
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import Metrics
import NIOCore
import NIOSSL
import NIOWebSocket
import ServiceLifecycle
import Synchronization
import SwitchboardContracts
import SwitchboardKafka
import SwitchboardRedis
import SwitchboardRuntime
import SwitchboardStore

public struct GatewaySettings: Sendable {
    /// Longest message content accepted, in characters (seed 000 and 002).
    public var maxContentLength = 10_000
    /// Largest WebSocket message accepted, in bytes.
    public var maxFrameBytes = 64 * 1024
    /// Interval of the server's WebSocket pings (seed 000: 30 s; closed after 3 missed).
    public var pingInterval: Duration = .seconds(30)
    /// Bytes buffered per connection before a slow client is disconnected (seed 000: 1 MB).
    public var outboundLimitBytes = 1 << 20
    /// A new connection must send its request head (with the token) within this, or it is closed.
    public var handshakeTimeout: Duration = .seconds(10)
    /// An HTTP keep-alive connection with no request for this long is closed (a stream being answered,
    /// SSE, is not idle).
    public var httpIdleTimeout: Duration = .seconds(60)
    /// A request's body must have arrived in full this long after its head, or the connection is
    /// closed (a body trickled a byte at a time).
    public var httpBodyTimeout: Duration = .seconds(30)
    /// Kernel send buffer per client socket (SO_SNDBUF). Linux otherwise lets it grow to 4 MiB
    /// (tcp_wmem), which a client that stops reading fills before the outbound bound is reached;
    /// 0 leaves the kernel's autotuning on.
    public var socketSendBufferBytes = 128 * 1024
    /// SSE comment pings, so proxies keep idle streams open.
    public var ssePingInterval: Duration = .seconds(15)
    /// Spread of the shutdown close frames (clients reconnect elsewhere, not all at once); seed 000's
    /// graceful shutdown timeout.
    public var shutdownWindow: Duration = .seconds(30)
    /// Open connections per user across all gateways.
    public var maxConnectionsPerUser = 100
    /// Commands per second per user across all gateways, and the burst allowed above it.
    public var commandsPerSecond = 20.0
    public var commandBurst = 40
    /// A connection whose commands keep being refused for this long (at least `rateExcessRefusals` of
    /// them, never a second apart) is closed with 4504: the excess is sustained, not a burst.
    public var rateExcessWindow: Duration = .seconds(3)
    public var rateExcessRefusals = 20
    /// Routing-table entries expire this long after their gateway's last heartbeat.
    public var routingTTLSeconds = 30
    /// Consecutive bad commands before the connection is closed with 4501.
    public var maxConsecutiveErrors = 10
    /// Bisheng's chat WebSocket (seed 002's limits).
    public var chat = BishengChatSettings()
    /// xiaozhi voice devices (docs/voice.md).
    public var xiaozhi = XiaozhiSettings()
    /// How long a non-streaming front-door request (`POST /v1/chat/completions` without `stream`)
    /// waits for its run to end before answering 504 (the run goes on).
    public var frontDoorTimeout: Duration = .seconds(600)
    /// The web console's files; nil: the ones in the gateway's resource bundle.
    public var consoleDirectory: String?
    /// TLS on the public port (HTTPS, WSS), from a certificate chain and key in PEM files; nil: clear
    /// text (TLS ends at a proxy in front, or nowhere in development). The admin port stays clear text.
    public var tls: NIOSSLContext?

    public init() {}

    /// Flags and environment for the gateway's own settings (see docs/configuration.md).
    public struct Options: ParsableArguments {
        @Option(
            help: "Connections per user, all gateways (env SWITCHBOARD_GATEWAY_MAX_CONNECTIONS_PER_USER; default 100).")
        public var maxConnectionsPerUser: Int?
        @Option(help: "Commands per second per user (env SWITCHBOARD_GATEWAY_COMMANDS_PER_SECOND; default 20).")
        public var commandsPerSecond: Double?
        @Option(help: "Command burst per user (env SWITCHBOARD_GATEWAY_COMMAND_BURST; default 40).")
        public var commandBurst: Int?
        @Option(
            help:
                "Outbound buffer per connection in bytes (env SWITCHBOARD_GATEWAY_OUTBOUND_LIMIT_BYTES; default 1048576)."
        )
        public var outboundLimitBytes: Int?
        @Option(
            help:
                "SO_SNDBUF per client socket, 0 for kernel autotuning (env SWITCHBOARD_GATEWAY_SOCKET_SEND_BUFFER_BYTES; default 131072)."
        )
        public var socketSendBufferBytes: Int?
        @Option(
            help:
                "Seconds a new connection has to send its request head (env SWITCHBOARD_GATEWAY_HANDSHAKE_TIMEOUT_SECONDS; default 10)."
        )
        public var handshakeTimeoutSeconds: Double?
        @Option(
            help:
                "Seconds over which shutdown closes the connections (env SWITCHBOARD_GATEWAY_SHUTDOWN_WINDOW_SECONDS; default 30)."
        )
        public var shutdownWindowSeconds: Double?
        @Option(
            help: "Serve the web console from this folder instead of the built-in copy (env SWITCHBOARD_CONSOLE_DIR).")
        public var consoleDir: String?
        @Option(
            help:
                "PEM certificate chain for TLS on the public port (env SWITCHBOARD_GATEWAY_TLS_CERT_FILE; with --tls-key-file)."
        )
        public var tlsCertFile: String?
        @Option(
            help:
                "PEM private key for TLS on the public port (env SWITCHBOARD_GATEWAY_TLS_KEY_FILE; with --tls-cert-file)."
        )
        public var tlsKeyFile: String?

        public init() {}

        public func settings() throws -> GatewaySettings {
            var settings = GatewaySettings()
            settings.maxConnectionsPerUser = try setting(
                maxConnectionsPerUser, environment: "GATEWAY_MAX_CONNECTIONS_PER_USER",
                default: settings.maxConnectionsPerUser)
            settings.commandsPerSecond = try setting(
                commandsPerSecond, environment: "GATEWAY_COMMANDS_PER_SECOND", default: settings.commandsPerSecond)
            settings.commandBurst = try setting(
                commandBurst, environment: "GATEWAY_COMMAND_BURST", default: settings.commandBurst)
            settings.outboundLimitBytes = try setting(
                outboundLimitBytes, environment: "GATEWAY_OUTBOUND_LIMIT_BYTES", default: settings.outboundLimitBytes)
            settings.socketSendBufferBytes = try setting(
                socketSendBufferBytes, environment: "GATEWAY_SOCKET_SEND_BUFFER_BYTES",
                default: settings.socketSendBufferBytes)
            let handshakeSeconds = try setting(
                handshakeTimeoutSeconds, environment: "GATEWAY_HANDSHAKE_TIMEOUT_SECONDS", default: 10.0)
            guard handshakeSeconds > 0 else { throw ConfigurationError("the handshake timeout must be positive") }
            settings.handshakeTimeout = .milliseconds(Int64(handshakeSeconds * 1000))
            let shutdownSeconds = try setting(
                shutdownWindowSeconds, environment: "GATEWAY_SHUTDOWN_WINDOW_SECONDS", default: 30.0)
            guard shutdownSeconds >= 0 else { throw ConfigurationError("the shutdown window must not be negative") }
            settings.shutdownWindow = .milliseconds(Int64(shutdownSeconds * 1000))
            for (variable, keyPath) in [
                ("GATEWAY_HTTP_IDLE_TIMEOUT_SECONDS", \GatewaySettings.httpIdleTimeout),
                ("GATEWAY_HTTP_BODY_TIMEOUT_SECONDS", \GatewaySettings.httpBodyTimeout),
            ] {
                let seconds = try setting(
                    Double?.none, environment: variable, default: Double(settings[keyPath: keyPath].components.seconds))
                guard seconds > 0 else { throw ConfigurationError("SWITCHBOARD_\(variable) must be positive") }
                settings[keyPath: keyPath] = .milliseconds(Int64(seconds * 1000))
            }
            settings.consoleDirectory =
                consoleDir
                ?? ProcessInfo.processInfo.environment["SWITCHBOARD_CONSOLE_DIR"].flatMap { $0.isEmpty ? nil : $0 }
            settings.tls = try Self.tlsContext(
                certificateFile: try setting(tlsCertFile, environment: "GATEWAY_TLS_CERT_FILE", default: ""),
                keyFile: try setting(tlsKeyFile, environment: "GATEWAY_TLS_KEY_FILE", default: ""))
            settings.chat = try BishengChatSettings.fromEnvironment()
            settings.xiaozhi = try XiaozhiSettings.fromEnvironment()
            guard settings.socketSendBufferBytes >= 0 else {
                throw ConfigurationError("the socket send buffer must be 0 (autotuning) or a size in bytes")
            }
            guard settings.maxConnectionsPerUser > 0, settings.commandsPerSecond > 0, settings.commandBurst > 0,
                settings.outboundLimitBytes >= 1024
            else { throw ConfigurationError("gateway limits must be positive (outbound buffer ≥ 1024 bytes)") }
            return settings
        }

        /// Both files or neither; read now, so a missing or unreadable one stops the gateway at start.
        static func tlsContext(certificateFile: String, keyFile: String) throws -> NIOSSLContext? {
            guard !certificateFile.isEmpty || !keyFile.isEmpty else { return nil }
            guard !certificateFile.isEmpty, !keyFile.isEmpty else {
                throw ConfigurationError(
                    "TLS needs both SWITCHBOARD_GATEWAY_TLS_CERT_FILE and SWITCHBOARD_GATEWAY_TLS_KEY_FILE")
            }
            do {
                let chain = try NIOSSLCertificate.fromPEMFile(certificateFile).map {
                    NIOSSLCertificateSource.certificate($0)
                }
                let configuration = TLSConfiguration.makeServerConfiguration(
                    certificateChain: chain, privateKey: .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem)))
                return try NIOSSLContext(configuration: configuration)
            } catch {
                throw ConfigurationError(
                    "cannot use the TLS certificate \(certificateFile) and key \(keyFile): \(error)")
            }
        }
    }
}

/// The gateway: authenticates clients, turns their commands into events on Kafka, and writes the events
/// of the channels they follow (from Redis) to their sockets.
public enum Gateway {
    public static func run(configuration: SwitchboardConfiguration, settings: GatewaySettings = GatewaySettings())
        async throws
    {
        // First: a gateway whose console is missing fails at once, not on the first page view.
        let console = try ConsoleAssets.load(directory: settings.consoleDirectory)
        let context = try await ServiceRunner.makeContext(configuration: configuration)
        let authority = try await TokenAuthority(configuration: configuration)
        let subscriber = RedisSubscriber(endpoint: try configuration.redisEndpoint, logger: context.logger)
        let hub = DeliveryHub(source: subscriber)
        let registry = SessionRegistry(shutdownWindow: settings.shutdownWindow, logger: context.logger)
        let routing = ConnectionRegistry(
            redis: context.redis, gatewayID: configuration.instanceID, ttlSeconds: settings.routingTTLSeconds,
            maxConnectionsPerUser: settings.maxConnectionsPerUser)
        let storeConfiguration = try StoreConfiguration(url: configuration.postgresURL)
        try await HistoryStore.migrate(configuration: storeConfiguration, logger: context.logger)
        let store = HistoryStore(configuration: storeConfiguration, logger: context.logger)
        context.readiness.add("postgres") { await store.isReachable() }
        let devices = DeviceConnections()
        let (router, doors) = makeRouter(
            context: context, authority: authority, hub: hub, registry: registry, routing: routing,
            settings: settings, store: store, devices: devices, console: console)
        try await ServiceRunner.run(
            context: context,
            services: [
                store, subscriber, RegistryHeartbeat(registry: routing, sessions: registry, logger: context.logger),
            ],
            router: router,
            server: server(router: router, doors: doors, settings: settings),
            stoppingBeforeServer: [registry, devices])
    }

    static func makeRouter(
        context: ServiceContext, authority: TokenAuthority, hub: DeliveryHub, registry: SessionRegistry,
        routing: ConnectionRegistry, settings: GatewaySettings, store: HistoryStore, devices: DeviceConnections,
        console: ConsoleAssets
    ) -> (Router<GatewayRequestContext>, WebSocketDoors) {
        let router = Router(context: GatewayRequestContext.self)
        console.addRoutes(to: router)
        let access = ConversationAccess(redis: context.redis) { conversationID in
            try await store.owner(of: conversationID)
        }
        let history = ChannelHistory(redis: context.redis)
        let roles = RoleDirectory(redis: context.redis, logger: context.logger)
        let admission = Admission(
            authority: authority, registry: registry, routing: routing,
            limiter: RateLimiter(redis: context.redis, rate: settings.commandsPerSecond, burst: settings.commandBurst),
            settings: settings)
        let handler = CommandHandler(
            context: context, hub: hub, access: access, history: history, roles: roles, admission: admission,
            settings: settings, store: store)
        var doors: [any WebSocketDoor] = [
            ChatSocketDoor(admission: admission, hub: hub, history: history, handler: handler, settings: settings)
        ]
        router.get("/api/v1/system/status") { request, _ -> Response in
            _ = try await authenticate(request, authority: authority)
            let status = try await SystemStatus.read(from: context.redis)
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(status.data))))
        }
        let streams = EventStreams(
            context: context, authority: authority, hub: hub, access: access, history: history,
            admission: admission, settings: settings, roles: roles)
        streams.addRoutes(to: router)
        HistoryRoutes(store: store, authority: authority, access: access).addRoutes(to: router)
        let bisheng = BishengChat(
            context: context, admission: admission, hub: hub, access: access, history: history, store: store,
            settings: settings)
        let workflows = WorkflowSocket(
            context: context, authority: authority, hub: hub, history: history, admission: admission, routing: routing,
            settings: settings, archive: store)
        let xiaozhi = XiaozhiDevices(
            context: context, authority: authority, hub: hub, access: access, admission: admission,
            settings: settings, connections: devices)
        workflows.addRoutes(to: router)
        bisheng.addRoutes(to: router)
        xiaozhi.addRoutes(to: router)
        doors += [workflows, bisheng]
        doors.append(xiaozhi)
        DeviceRoutes(context: context, authority: authority, settings: settings).addRoutes(to: router)
        OpenAICompatibility(streams: streams).addRoutes(to: router)
        BluePlanCompatibility(streams: streams).addRoutes(to: router)
        let webSocketDoors = WebSocketDoors(doors)
        webSocketDoors.addPlainHTTPAnswers(to: router)
        return (router, webSocketDoors)
    }

    /// HTTP/1.1 with WebSocket upgrades taken by `doors` before the router, behind the handshake deadline
    /// (and TLS when configured).
    static func server(router: Router<GatewayRequestContext>, doors: WebSocketDoors, settings: GatewaySettings)
        -> HTTPServerBuilder
    {
        let connectionSettings = WebSocketConnectionSettings(
            maxMessageBytes: settings.maxFrameBytes, outboundLimitBytes: settings.outboundLimitBytes,
            pingInterval: TimeAmount(settings.pingInterval))
        let deadline = TimeAmount(settings.handshakeTimeout)
        return HTTPServerBuilder { responder in
            TLSTermination(
                base: HandshakeDeadlineChannel(
                    base: GatewayChildChannel(
                        responder: responder, doors: doors, settings: connectionSettings,
                        socketSendBufferBytes: settings.socketSendBufferBytes,
                        httpIdleTimeout: settings.httpIdleTimeout,
                        httpBodyTimeout: TimeAmount(settings.httpBodyTimeout), secure: settings.tls != nil),
                    deadline: deadline),
                context: settings.tls)
        }
    }

    /// The user of a request's token (`Authorization: Bearer`, or `?token=` for browsers).
    static func authenticate(_ request: Request, authority: TokenAuthority) async throws -> SwitchboardClaims {
        var token = request.uri.queryParameters["token"].map(String.init)
        if let header = request.headers[.authorization], header.hasPrefix("Bearer ") {
            token = String(header.dropFirst("Bearer ".count))
        }
        return try await authenticate(token: token, authority: authority)
    }

    /// The user of a token; 401 when it is missing or does not verify.
    static func authenticate(token: String?, authority: TokenAuthority) async throws -> SwitchboardClaims {
        guard let token, !token.isEmpty else {
            throw HTTPError(.unauthorized, message: "a token is required (Authorization: Bearer or ?token=)")
        }
        do {
            return try await authority.verify(token)
        } catch {
            throw HTTPError(.unauthorized, message: error.reason)
        }
    }
}
