// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

// Every service is a thin executable over a library target that its tests import.
struct ServiceTarget {
    let executable: String  // the binary's name
    let library: String  // the module holding the service's logic
    let folder: String  // under Services/
    let dependencies: [Target.Dependency]
    var resources: [Resource] = []
}

let runtime: [Target.Dependency] = [
    "SwitchboardContracts", "SwitchboardKafka", "SwitchboardRedis", "SwitchboardRuntime", "SwitchboardTracing",
    .product(name: "Logging", package: "swift-log"),
    .product(name: "Metrics", package: "swift-metrics"),
    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
]

let services: [ServiceTarget] = [
    .init(
        executable: "gateway", library: "Gateway", folder: "gateway",
        dependencies: [
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
            .product(name: "CompressNIO", package: "compress-nio"),
            .product(name: "NIOWebSocket", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "DequeModule", package: "swift-collections"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Crypto", package: "swift-crypto"),
            "SwitchboardStore",
            "SwitchboardWorkflow",
            "SwitchboardVoice",
        ],
        // The web console's static files (docs/console.md), served from the gateway's resource bundle.
        resources: [.copy("Console")]),
    .init(
        executable: "orchestrator", library: "Orchestrator", folder: "orchestrator",
        dependencies: [
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            "SwitchboardStore",
        ]),
    .init(
        executable: "agent-worker", library: "AgentWorker", folder: "agent-worker",
        dependencies: [
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
    .init(
        executable: "voice-worker", library: "VoiceWorker", folder: "voice-worker",
        dependencies: [
            "SwitchboardVoice", "CPocketSphinx",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
    .init(
        executable: "workflow-runner", library: "WorkflowRunner", folder: "workflow-runner",
        dependencies: [
            "SwitchboardWorkflow",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            // getaddrinfo on NIO's thread pool (egress checks, Egress.swift).
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
    .init(executable: "notifier", library: "Notifier", folder: "notifier", dependencies: ["SwitchboardStore"]),
]

var targets: [Target] = [
    // C libraries, each wrapped by exactly one Swift module.
    .systemLibrary(
        name: "CRDKafka", path: "Shared/CRDKafka", pkgConfig: "rdkafka",
        providers: [.apt(["librdkafka-dev (>= 2.1, see deploy/scripts/install-deps.sh)"])]),
    .systemLibrary(
        name: "CHiredis", path: "Shared/CHiredis", pkgConfig: "hiredis", providers: [.apt(["libhiredis-dev"])]),
    .systemLibrary(name: "COpus", path: "Shared/COpus", pkgConfig: "opus", providers: [.apt(["libopus-dev"])]),
    .systemLibrary(
        name: "CPocketSphinx", path: "Shared/CPocketSphinx", pkgConfig: "pocketsphinx",
        providers: [.apt(["libpocketsphinx-dev", "pocketsphinx-en-us"])]),

    .target(
        name: "SwitchboardContracts",
        dependencies: [],
        path: "Shared/SwitchboardContracts",
        swiftSettings: swiftSettings),
    // Spans across every hop, made through swift-distributed-tracing and exported by swift-otel when
    // SWITCHBOARD_OTEL_ENDPOINT is set (docs/configuration.md#traces).
    .target(
        name: "SwitchboardTracing",
        dependencies: [
            "SwitchboardContracts",
            .product(name: "Tracing", package: "swift-distributed-tracing"),
            .product(name: "Instrumentation", package: "swift-distributed-tracing"),
        ],
        path: "Shared/SwitchboardTracing",
        swiftSettings: swiftSettings),
    .target(
        name: "SwitchboardKafka",
        dependencies: [
            "CRDKafka", "SwitchboardContracts", "SwitchboardTracing",
            .product(name: "DequeModule", package: "swift-collections"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ],
        path: "Shared/SwitchboardKafka",
        swiftSettings: swiftSettings),
    .target(
        name: "SwitchboardRedis",
        dependencies: [
            "CHiredis", "SwitchboardContracts",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Crypto", package: "swift-crypto"),
            // RedisSubscriber is a Service; undeclared, the build only worked when another target built it first.
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ],
        path: "Shared/SwitchboardRedis",
        swiftSettings: swiftSettings),
    .target(
        name: "SwitchboardRuntime",
        dependencies: [
            "SwitchboardContracts", "SwitchboardKafka", "SwitchboardRedis", "SwitchboardTracing",
            .product(name: "OTel", package: "swift-otel"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "JWTKit", package: "jwt-kit"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ],
        path: "Shared/SwitchboardRuntime",
        swiftSettings: swiftSettings),
    // Durable history (sessions, messages, assistant turns) in PostgreSQL: the query side.
    .target(
        name: "SwitchboardStore",
        dependencies: [
            "SwitchboardContracts", "SwitchboardKafka",
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ],
        path: "Shared/SwitchboardStore",
        swiftSettings: swiftSettings),
    // The xiaozhi device protocol, Opus, VAD, pacing and text-to-speech helpers shared by the gateway,
    // voice-worker and the tests' device simulator.
    .target(
        name: "SwitchboardVoice",
        dependencies: [
            "COpus", "SwitchboardContracts", "SwitchboardRedis",
            .product(name: "Crypto", package: "swift-crypto"),
        ],
        path: "Shared/SwitchboardVoice",
        swiftSettings: swiftSettings),
    // Workflow definitions, validation and the scheduler: pure values shared by the runner and the gateway,
    // and the run store (Redis, archived in PostgreSQL).
    .target(
        name: "SwitchboardWorkflow",
        dependencies: [
            "SwitchboardContracts", "SwitchboardRedis", "SwitchboardStore",
            .product(name: "Mustache", package: "swift-mustache"),
        ],
        path: "Shared/SwitchboardWorkflow",
        swiftSettings: swiftSettings),
]

var products: [Product] = []
for service in services {
    targets.append(
        .target(
            name: service.library, dependencies: runtime + service.dependencies,
            path: "Services/\(service.folder)/Library", resources: service.resources, swiftSettings: swiftSettings))
    targets.append(
        .executableTarget(
            name: "\(service.library)Main",
            dependencies: [
                .target(name: service.library), "SwitchboardRuntime",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Services/\(service.folder)/Main", swiftSettings: swiftSettings))
    products.append(.executable(name: service.executable, targets: ["\(service.library)Main"]))
}

targets += [
    .target(
        name: "SwitchboardCLI",
        dependencies: runtime + [
            "SwitchboardVoice",
            "SwitchboardWorkflow",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "NIOWebSocket", package: "swift-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
            "SwitchboardStore",
        ],
        path: "Services/switchboard/Library", swiftSettings: swiftSettings),
    .executableTarget(
        name: "SwitchboardMain",
        dependencies: ["SwitchboardCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")],
        path: "Services/switchboard/Main", swiftSettings: swiftSettings),

    .target(
        name: "SwitchboardTestSupport",
        dependencies: runtime + [
            "Gateway",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "CompressNIO", package: "compress-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "NIOCore", package: "swift-nio"),
        ],
        path: "Tests/Support", swiftSettings: swiftSettings),
    .testTarget(
        name: "UnitTests",
        dependencies: runtime + [
            "Gateway", "Orchestrator", "AgentWorker", "Notifier", "SwitchboardCLI", "SwitchboardTestSupport",
            "SwitchboardStore", "SwitchboardVoice", "VoiceWorker",
            "SwitchboardWorkflow",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "CompressNIO", package: "compress-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOWebSocket", package: "swift-nio"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "Crypto", package: "swift-crypto"),
        ],
        path: "Tests/UnitTests", swiftSettings: swiftSettings),
    .testTarget(
        name: "IntegrationTests",
        dependencies: runtime + ["SwitchboardTestSupport", "SwitchboardStore", "SwitchboardVoice", "AgentWorker"],
        path: "Tests/IntegrationTests", swiftSettings: swiftSettings),
    .testTarget(
        name: "EndToEndTests",
        dependencies: runtime + [
            "SwitchboardTestSupport", "SwitchboardCLI", "SwitchboardStore", "SwitchboardWorkflow", "SwitchboardVoice",
        ],
        path: "Tests/EndToEndTests", swiftSettings: swiftSettings),
]
products.append(.executable(name: "switchboard", targets: ["SwitchboardMain"]))

let package = Package(
    name: "switchboard",
    platforms: [.macOS(.v15)],
    products: products,
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.0.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.20.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.27.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.20.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.6.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.0.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.4.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.24.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.3.0"),
        // OTLP over HTTP only: the gRPC exporter (its default trait) would build gRPC, which no service needs.
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: targets
)
