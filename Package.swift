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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
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
        .executableTarget(
            name: "itb-bridged",
            dependencies: [
                "ITBProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "itbctl",
            dependencies: [
                "ITBProtocol",
                "ITBJSON",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ITBProtocolTests",
            dependencies: ["ITBProtocol", "ITBJSON"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ITBSerialTests",
            dependencies: ["ITBSerial"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ITBJSONTests",
            dependencies: ["ITBJSON", "ITBProtocol"],
            swiftSettings: swiftSettings
        ),
    ]
)
