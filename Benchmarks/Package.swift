// swift-tools-version: 6.1
//
// Benchmarks for itb-bridge, in their own package (as swift-nio does) so that the product never
// depends on benchmark tooling. Run from the repository root:
//
//   swift package --package-path Benchmarks -c release benchmark
//
// ordo-one/benchmark: only the MallocInterposer trait (its default traits need a package that
// is not available on our build machines). `mallocCountTotal` is deterministic: gate on it.

import PackageDescription

let package = Package(
    name: "itb-bridge-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        // Named explicitly: a path dependency is otherwise known by its folder name, which differs
        // between checkouts.
        .package(name: "itb-bridge", path: "../"),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "itb-live-bench",
            dependencies: [
                .product(name: "ITBProtocol", package: "itb-bridge"),
                .product(name: "ITBSerial", package: "itb-bridge"),
                .product(name: "ITBSimulator", package: "itb-bridge"),
                .product(name: "ITBClient", package: "itb-bridge"),
                .product(name: "ITBCapture", package: "itb-bridge"),
                "CLiveBench",
            ],
            path: "Benchmarks/LiveBenchmarks",
            // Swift 5 mode: a measurement tool whose buffers are shared with its reader threads
            // on purpose (raw pointers, one writer per slot); the product itself is Swift 6.
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        // <sys/epoll.h> and FIONREAD for itb-live-bench's SSE subscribers (the Glibc module has
        // neither epoll nor a callable ioctl).
        .target(name: "CLiveBench", path: "Benchmarks/CLiveBench"),
        .executableTarget(
            name: "DecodeBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ITBProtocol", package: "itb-bridge"),
                .product(name: "ITBJSON", package: "itb-bridge"),
            ],
            path: "Benchmarks/DecodeBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ]
)
