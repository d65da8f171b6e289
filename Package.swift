// swift-tools-version: 6.1
//
// itb-bridge: a Linux daemon that bridges telemetry from the clinician programmers of
// intrathecal baclofen pumps to clinic software. Read-only towards therapy.
//
// Module layout (dependencies point one way, towards the protocol):
//   CCRC32C      C: CRC-32C with SSE4.2 / ARMv8 CRC instructions, chosen at run time.
//   ITBProtocol  frame layout, streaming zero-copy decoder, typed views, encoder. No I/O.
//   ITBJSON      renders protocol values as the API's JSON (snake_case, units in names).
//   CITBShims    C: what Glibc does not show Swift (variadic ioctls, ptys, SO_PEERCRED).
//   CUdev        libudev as a system library (apt: libudev-dev).
//   ITBSerial    termios serial port, pseudo-terminals, udev discovery, reconnecting link.
//                Knows bytes, not frames or JSON.
//   ITBClient    HTTP/1.1 + SSE client over the daemon's Unix socket (itbctl, tests).
//   ITBCapture   capture files (protocol-spec/CAPTURE.md): rotating writer, streaming reader.
//   ITBSimulator the programmer's side of the protocol on a pty (simulator, tests, replay).
//   ITBBridge    the daemon as a library: sessions, pump state, derived values, journal,
//                event hub, HTTP API. `itb-bridged` is a thin main over it.
//   itb-bridged  the daemon (thin main).
//   itbctl       client and engineering tool.
// Benchmarks live in their own package (Benchmarks/Package.swift), as swift-nio does, so the
// product never depends on benchmark tooling.

import PackageDescription

/// Settings every Swift target shares.
let swiftSettings: [SwiftSetting] = [
    // Swift 6 language mode: complete strict-concurrency checking is on by default.
    .swiftLanguageMode(.v6),
    // Make `any` explicit for existentials so that their cost is visible in review.
    .enableUpcomingFeature("ExistentialAny"),
    // Imports are internal unless marked `public import`, so a module's API does not leak its
    // dependencies.
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "itb-bridge",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "itb-bridged", targets: ["itb-bridged"]),
        .executable(name: "itbctl", targets: ["itbctl"]),
        .library(name: "ITBProtocol", targets: ["ITBProtocol"]),
        .library(name: "ITBJSON", targets: ["ITBJSON"]),
        .library(name: "ITBSerial", targets: ["ITBSerial"]),
        .library(name: "ITBBridge", targets: ["ITBBridge"]),
        .library(name: "ITBClient", targets: ["ITBClient"]),
        .library(name: "ITBSimulator", targets: ["ITBSimulator"]),
        .library(name: "ITBCapture", targets: ["ITBCapture"]),
        .executable(name: "itb-forward", targets: ["itb-forward"]),
        .library(name: "ITBForward", targets: ["ITBForward"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        // itb-forward writes the journal into PostgreSQL (issue 16).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        // NIOSSLContext: itb-forward's TLS to PostgreSQL (require, verify-full with a CA file).
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        .target(name: "CCRC32C"),
        .target(
            name: "ITBProtocol",
            dependencies: ["CCRC32C"],
            swiftSettings: swiftSettings
        ),
        .target(name: "CITBShims"),
        .systemLibrary(
            name: "CUdev",
            pkgConfig: "libudev",
            providers: [.apt(["libudev-dev"])]
        ),
        .target(
            name: "ITBSerial",
            dependencies: ["CITBShims", "CUdev"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ITBJSON",
            dependencies: ["ITBProtocol"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ITBBridge",
            dependencies: [
                "ITBProtocol", "ITBJSON", "ITBSerial", "ITBCapture", "CITBShims",
                .product(name: "Logging", package: "swift-log"),
                // Counters, gauges and timers are CoreMetrics' types (BridgeMetrics.swift);
                // Prometheus renders them for /metrics.
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                // HTTPResponsePart: live events are written straight into the connection's
                // pipeline on its event loop (API/SSEChannelSink.swift).
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                // HTTPParserError: a request body that is not valid HTTP/1.1 is a 400.
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            // Embedded in the binary (PackageResources.openapi_json), not a resource bundle: a
            // bundle is looked for beside the executable or in the build directory, so an
            // installed itb-bridged (the Debian package, scripts/install.sh) found neither and
            // crashed on its first request with a query (found in the Debian guest).
            resources: [.embedInCode("Resources/openapi.json")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ITBClient",
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ITBCapture",
            dependencies: ["ITBProtocol", "ITBJSON"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ITBSimulator",
            dependencies: ["ITBProtocol", "ITBSerial", "ITBJSON"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "itb-bridged",
            dependencies: [
                "ITBBridge", "ITBSerial",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "itbctl",
            dependencies: [
                "ITBProtocol", "ITBJSON", "ITBClient", "ITBSimulator", "ITBSerial", "ITBCapture",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // itb-forward's library: the forwarding rules as plain values (batching, position,
        // back-off), the PostgreSQL schema and its migrations, the writer and the follower.
        .target(
            name: "ITBForward",
            dependencies: [
                "ITBClient",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // Follows one bridge's /v1/events and writes every event into PostgreSQL exactly once.
        .executableTarget(
            name: "itb-forward",
            dependencies: [
                "ITBForward",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Helpers shared by the test targets (test targets cannot share sources); only tests use it.
        .target(
            name: "ITBTestSupport",
            dependencies: ["ITBProtocol"],
            path: "Tests/ITBTestSupport",
            swiftSettings: swiftSettings
        ),
        // The bridge's test harness, written once: the restartable in-process TestDaemon, the
        // daemon as a process, the programmer driver, CoreBench, the executable locator and the
        // daemon's JSON. Only the bridge and itbctl test targets use it.
        .target(
            name: "ITBBridgeTestSupport",
            dependencies: [
                "ITBBridge", "ITBClient", "ITBSimulator", "ITBProtocol", "ITBSerial", "ITBTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/ITBBridgeTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ITBProtocolTests",
            dependencies: ["ITBProtocol", "ITBJSON", "ITBTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ITBBridgeTests",
            dependencies: [
                "ITBBridge", "ITBProtocol", "ITBJSON", "ITBSerial", "ITBClient", "ITBSimulator", "ITBCapture", "ITBTestSupport", "ITBBridgeTestSupport",
                .product(name: "Logging", package: "swift-log"),
                // GRDB: the migration test counts the rows of a journal file as it is on disk.
                .product(name: "GRDB", package: "GRDB.swift"),
                // EventHubTests attach sinks to an event loop of NIOPosix's singleton group.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            // A journal written by the release before pump records (scripts/make-v1-journal.sh),
            // read from its path by the migration test.
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ITBCaptureTests",
            dependencies: ["ITBCapture", "ITBProtocol"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ITBSerialTests",
            dependencies: ["ITBSerial"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ITBJSONTests",
            dependencies: ["ITBJSON", "ITBProtocol", "ITBTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ITBForwardTests",
            dependencies: [
                "ITBForward", "ITBClient", "ITBBridgeTestSupport", "ITBTestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ItbctlTests",
            dependencies: ["ITBBridge", "ITBClient", "ITBSimulator", "ITBProtocol", "ITBTestSupport", "ITBBridgeTestSupport"],
            swiftSettings: swiftSettings
        ),
    ]
)
