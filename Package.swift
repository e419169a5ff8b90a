// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "coffer",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "coffer", targets: ["coffer"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    ],
    targets: [
        // Hardware CRC32C (SSE4.2 / ARMv8 CRC) with a portable table fallback.
        .target(name: "CCRC32C"),
        // The blob-store protocol, keys, metadata and errors: shared by the engine, the HTTP layer and the gateway.
        .target(
            name: "CofferCore",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The node's storage engine: append-only log, group commit, spill files, recovery. No HTTP knowledge.
        .target(
            name: "CofferEngine",
            dependencies: [
                "CofferCore",
                "CCRC32C",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The HTTP/1.1 data path on SwiftNIO: routing, validation, status mapping. No file-format knowledge.
        .target(
            name: "CofferHTTP",
            dependencies: [
                "CofferCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // `coffer gateway`: backends (S3 with SigV4, plain HTTP), Docker discovery, rendezvous sharding, per-backend
        // caps, retries and circuit breakers, and the sharded store that the HTTP layer serves. No file formats.
        .target(
            name: "CofferGateway",
            dependencies: [
                "CofferCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // `coffer bench`: the load generator on SwiftNIO with per-key integrity checking. No ArgumentParser.
        .target(
            name: "CofferBench",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "coffer",
            dependencies: [
                "CofferBench",
                "CofferCore",
                "CofferEngine",
                "CofferGateway",
                "CofferHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The engine's test seams: a file-system seam that injects faults and models power loss. Tests only.
        .target(
            name: "CofferEngineTesting",
            dependencies: [
                "CofferEngine",
                "CofferTestKit",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Tests/CofferEngineTesting"
        ),
        .testTarget(
            name: "CofferEngineTests",
            dependencies: ["CofferEngine", "CofferEngineTesting", "CofferTestKit", "CofferCore", "CCRC32C"],
            resources: [.copy("Golden")]
        ),
        // The HTTP test client (keep-alive and raw connections), digests and test data, shared by the test targets.
        .target(
            name: "CofferTestKit",
            dependencies: [
                "CofferCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Tests/CofferTestKit"
        ),
        .testTarget(
            name: "CofferHTTPTests",
            dependencies: [
                "CofferHTTP",
                "CofferEngine",
                "CofferEngineTesting",
                "CofferCore",
                "CofferTestKit",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // The load generator: parsing, the integrity model, runs against a live node and a corrupting server.
        .testTarget(
            name: "CofferBenchTests",
            dependencies: [
                "CofferBench",
                "CofferHTTP",
                "CofferEngine",
                "CofferCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The gateway against real backends on loopback: moto S3 servers, Coffer nodes, slow fileservers, dockerd.
        .testTarget(
            name: "CofferGatewayTests",
            dependencies: [
                "CofferGateway",
                "CofferHTTP",
                "CofferEngine",
                "CofferCore",
                "CofferBench",
                "CofferTestKit",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The real `coffer` binary as a child process: crash loops (SIGKILL), graceful stops, restart at scale.
        // Depends on the executable so SwiftPM builds it; the tests run it from the build directory.
        .testTarget(
            name: "CofferProcessTests",
            dependencies: [
                "coffer",
                "CofferTestKit",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
    ]
)
