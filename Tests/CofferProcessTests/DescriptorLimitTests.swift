import CofferTestKit
import Foundation
import Testing

extension ProcessTests {
    /// Out of file descriptors, a node must say so (new connections wait in the backlog, silently otherwise) and
    /// recover once descriptors are free; at start it raises its soft limit to the hard one.
    @Suite struct DescriptorLimitTests {
        @Test(.timeLimit(.minutes(2))) func runningOutOfDescriptorsIsLoggedAndRecovered() async throws {
            try await withNodeRunner { runner in
                // Soft and hard limit 64: the node cannot raise it, and 64 connections exhaust it.
                let node = try await runner.start(launcher: ["prlimit", "--nofile=64:64"])
                #expect(node.log.contains("open-file limit"), "\(node.log)")
                var connections: [RawConnection] = []
                defer { for connection in connections { connection.close() } }
                for _ in 0..<80 {
                    guard let connection = try? await node.raw(timeout: .seconds(5)) else { break }
                    connections.append(connection)
                }
                let logged = try await eventually(within: .seconds(10)) {
                    node.log.contains("cannot accept connections: out of file descriptors")
                }
                #expect(logged, "no log line for the refused accepts:\n\(node.log)")
                for connection in connections { connection.close() }
                connections = []
                // Descriptors are free again: a new client is served.
                let served = try await eventually(within: .seconds(10)) {
                    guard let client = try? await node.client(timeout: .seconds(2)) else { return false }
                    defer { client.close() }
                    return (try? await client.send(.GET, "/health").status) == 200
                }
                #expect(served)
            }
        }

        @Test(.timeLimit(.minutes(1))) func softLimitIsRaisedToTheHardLimit() async throws {
            try await withNodeRunner { runner in
                let node = try await runner.start(launcher: ["prlimit", "--nofile=256:4096"])
                let line = node.log.split(separator: "\n").first { $0.hasSuffix("open-file limit") }
                let metadata = line.map(LogLine.metadata) ?? [:]
                #expect(metadata["limit"] == "4096", "\(node.log)")
                #expect(metadata["was"] == "256")
            }
        }
    }
}
