// swift-tools-version:6.0
import PackageDescription

let swiftSettings: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "reelay",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "gateway", targets: ["gateway"]),
        .executable(name: "scheduler", targets: ["scheduler"]),
        .executable(name: "dispatcher", targets: ["dispatcher"]),
        .executable(name: "webhook", targets: ["webhook"]),
        .executable(name: "reelay", targets: ["reelay"]),
        .executable(name: "replicate-standin", targets: ["replicate-standin"]),
    ],
    // Every package of the graph is pinned exactly, the transitive ones too: Package.resolved is not tracked (the
    // package copies on development machines carry commit ids of their own), so these pins are what makes a build
    // elsewhere (the container image) resolve the very same versions. Bump them together, then run scripts/test.
    dependencies: [
        // Used directly.
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", exact: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
        // Pulled in by those.
        .package(url: "https://github.com/swift-server/async-http-client", exact: "1.37.0"),
        .package(url: "https://github.com/apple/swift-algorithms", exact: "1.2.1"),
        .package(url: "https://github.com/apple/swift-asn1", exact: "1.7.4"),
        .package(url: "https://github.com/apple/swift-async-algorithms", exact: "1.1.4"),
        .package(url: "https://github.com/apple/swift-atomics", exact: "1.3.0"),
        .package(url: "https://github.com/apple/swift-certificates", exact: "1.21.1"),
        .package(url: "https://github.com/apple/swift-collections", exact: "1.6.0"),
        .package(url: "https://github.com/apple/swift-configuration", exact: "1.4.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", exact: "1.7.3"),
        .package(url: "https://github.com/apple/swift-http-structured-headers", exact: "1.7.0"),
        .package(url: "https://github.com/apple/swift-http-types", exact: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", exact: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", exact: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", exact: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-transport-services", exact: "1.28.0"),
        .package(url: "https://github.com/apple/swift-numerics", exact: "1.1.1"),
        .package(url: "https://github.com/apple/swift-service-context", exact: "1.5.1"),
        .package(url: "https://github.com/apple/swift-system", exact: "1.8.1"),
    ],
    targets: [
        // C shims (system libraries from Debian's -dev packages).
        .systemLibrary(
            name: "ReelayCRabbitMQ", path: "Shared/ReelayCRabbitMQ", pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]),
        .systemLibrary(
            name: "ReelayCPQ", path: "Shared/ReelayCPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(
            name: "ReelayCCurl", path: "Shared/ReelayCCurl", pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]),

        // Pure rules: no IO.
        .target(
            name: "ReelayCore",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            path: "Shared/ReelayCore", swiftSettings: swiftSettings),
        // Configuration from the environment.
        .target(name: "ReelayConfig", dependencies: ["ReelayCore"], path: "Shared/ReelayConfig", swiftSettings: swiftSettings),

        // IO clients over the C libraries.
        .target(
            name: "ReelayAMQP",
            dependencies: [
                "ReelayCRabbitMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Shared/ReelayAMQP", swiftSettings: swiftSettings),
        .target(
            name: "ReelayPostgres",
            dependencies: [
                "ReelayCPQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Shared/ReelayPostgres", swiftSettings: swiftSettings),
        .target(
            name: "ReelayHTTPClient",
            dependencies: [
                "ReelayCCurl", "ReelayCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Shared/ReelayHTTPClient", swiftSettings: swiftSettings),

        // Reelay's own IO: all SQL, all message schemas and topology, shared service plumbing.
        .target(
            name: "ReelayStore",
            dependencies: [
                "ReelayCore", "ReelayPostgres", .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Shared/ReelayStore", swiftSettings: swiftSettings),
        .target(
            name: "ReelayMessaging", dependencies: ["ReelayCore", "ReelayAMQP", .product(name: "Logging", package: "swift-log")],
            path: "Shared/ReelayMessaging", swiftSettings: swiftSettings),
        .target(
            name: "ReelayService",
            dependencies: [
                "ReelayCore", "ReelayConfig", "ReelayStore", "ReelayMessaging", "ReelayHTTPClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            path: "Shared/ReelayService", swiftSettings: swiftSettings),

        // The four services.
        .executableTarget(name: "gateway", dependencies: ["ReelayService"], path: "Services/gateway", swiftSettings: swiftSettings),
        .executableTarget(name: "scheduler", dependencies: ["ReelayService"], path: "Services/scheduler", swiftSettings: swiftSettings),
        .executableTarget(name: "dispatcher", dependencies: ["ReelayService"], path: "Services/dispatcher", swiftSettings: swiftSettings),
        .executableTarget(name: "webhook", dependencies: ["ReelayService"], path: "Services/webhook", swiftSettings: swiftSettings),

        // Tools.
        .executableTarget(
            name: "reelay",
            dependencies: ["ReelayService", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Tools/reelay", swiftSettings: swiftSettings),
        .executableTarget(
            name: "replicate-standin",
            dependencies: [
                "ReelayCore", "ReelayHTTPClient",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tools/replicate-standin", swiftSettings: swiftSettings),

        // Tests: helpers every test target shares, then unit tests (no servers), integration tests (real PostgreSQL and
        // RabbitMQ) and end-to-end tests (the built executables as processes).
        .target(
            name: "ReelayTestSupport",
            dependencies: [
                "ReelayAMQP", "ReelayPostgres",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/ReelayTestSupport", swiftSettings: swiftSettings),
        .testTarget(
            name: "ReelayCoreTests", dependencies: ["ReelayCore", "ReelayConfig", "ReelayTestSupport"], path: "Tests/ReelayCoreTests",
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ReelayUnitTests",
            dependencies: [
                "ReelayTestSupport", "ReelayAMQP", "ReelayPostgres", "ReelayMessaging", "ReelayCore", "ReelayService",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/ReelayUnitTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "ReelayIntegrationTests",
            dependencies: [
                "ReelayTestSupport",
                "ReelayAMQP", "ReelayPostgres", "ReelayHTTPClient", "ReelayStore", "ReelayMessaging", "ReelayCore", "ReelayService",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/ReelayIntegrationTests", swiftSettings: swiftSettings),
        .testTarget(
            name: "ReelayEndToEndTests",
            dependencies: [
                "ReelayTestSupport", "ReelayHTTPClient", "ReelayCore", "ReelayPostgres", "ReelayAMQP", "ReelayMessaging",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/ReelayEndToEndTests", swiftSettings: swiftSettings),
    ]
)
