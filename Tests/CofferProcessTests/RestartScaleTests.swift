import CofferTestKit
import Foundation
import NIOHTTP1
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension ProcessTests {
    /// A node holding many small blobs restarts in bounded time with every one of them.
    @Suite struct RestartScaleTests {
        /// `COFFER_RESTART_BLOBS` (default 100,000) small blobs (100–300 bytes) written through the HTTP API on
        /// several keep-alive connections; SIGTERM; a new node on the directory. Prints the time from spawn to the
        /// first successful /health, and checks the recovery summary counts every blob and a random sample of
        /// 1,000 reads back byte for byte.
        @Test(.timeLimit(.minutes(10))) func restartsWithEveryBlob() async throws {
            let count = Environment.integer("COFFER_RESTART_BLOBS", default: 100_000)
            let connections = 128
            try await withNodeRunner { runner in
                let node = try await runner.start()
                let port = try #require(node.port)
                let writeStart = ContinuousClock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for worker in 0..<connections {
                        group.addTask {
                            let client = try await HTTPTestClient.connect(port: port, timeout: .seconds(60))
                            defer { client.close() }
                            for index in stride(from: worker, to: count, by: connections) {
                                let response = try await client.send(.PUT, Self.path(index), body: Self.body(index))
                                guard response.status == 201 else {
                                    throw ChildNodeError("PUT \(Self.path(index)): \(response.status) \(response.text)")
                                }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                let writeTime = ContinuousClock.now - writeStart
                node.signal(SIGTERM)
                #expect(try await node.waitForExit(within: .seconds(30)) == .exited(0))

                let spawned = ContinuousClock.now
                let restarted = try await runner.start()
                let ready = ContinuousClock.now - spawned
                let summary = try #require(restarted.recoverySummary)
                let milliseconds =
                    ready.components.seconds * 1000 + ready.components.attoseconds / 1_000_000_000_000_000
                print(
                    "restart: blobs=\(count) ms=\(milliseconds) (recovery ms=\(summary["ms"] ?? "?"), "
                        + "segments=\(summary["segments"] ?? "?"); written in \(writeTime) on \(connections) "
                        + "connections)")
                #expect(summary["blobs"] == "\(count)", "\(summary)")

                var generator = SeededGenerator(seed: UInt64(count))
                let sample = (0..<min(1000, count)).map { _ in Int.random(in: 0..<count, using: &generator) }
                let newPort = try #require(restarted.port)
                let mismatches = try await withThrowingTaskGroup(of: [Int].self) { group in
                    for part in 0..<4 {
                        group.addTask {
                            let client = try await HTTPTestClient.connect(port: newPort)
                            defer { client.close() }
                            var wrong: [Int] = []
                            for index in sample[(part * sample.count / 4)..<((part + 1) * sample.count / 4)] {
                                let response = try await client.send(.GET, Self.path(index))
                                let body = Self.body(index)
                                if response.status != 200 || !sameBytes(response.body, body)
                                    || response.header("etag") != Digests.etag(body)
                                {
                                    wrong.append(index)
                                }
                            }
                            return wrong
                        }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                #expect(mismatches.isEmpty, "blobs read back wrong: \(mismatches.prefix(20))")
            }
        }

        static func path(_ index: Int) -> String { "/store/scale/\(index)" }
        static func body(_ index: Int) -> [UInt8] { TestData.bytes(100 + index % 201, seed: UInt64(index)) }
    }
}
