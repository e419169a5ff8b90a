import CofferTestKit
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension ProcessTests {
    /// SIGTERM and SIGINT stop the node gracefully; every start logs what recovery did.
    @Suite struct GracefulStopTests {
        /// An upload half sent when the signal arrives: the node stops accepting connections at once, but finishes
        /// the upload (201, durable), then exits with status 0; the blob is there after a restart, and recovery
        /// had nothing to cut.
        @Test(.timeLimit(.minutes(2)), arguments: [SIGTERM, SIGINT])
        func signalFinishesTheUploadInFlight(signal: Int32) async throws {
            try await withNodeRunner { runner in
                let node = try await runner.start()
                let port = try #require(node.port)
                let body = TestData.bytes(3 * TestData.mib, seed: UInt64(signal))
                let half = body.count / 2
                let upload = try await node.raw()
                defer { upload.close() }
                // `Expect: 100-continue`: the interim answer says the node is reading this request's body, so the
                // signal cannot arrive before the request does.
                try await upload.send(
                    RawRequest.head(
                        "PUT", "/store/graceful", [("Content-Length", "\(body.count)"), ("Expect", "100-continue")]))
                let interim = try await upload.readResponse()
                #expect(interim?.status == 100)
                try await upload.send(Array(body[..<half]))

                node.signal(signal)
                let refused = try await eventually(within: .seconds(10)) { await !Self.acceptsConnections(port: port) }
                #expect(refused, "new connections are still accepted after signal \(signal)")
                #expect(node.isRunning, "the node exited with an upload in flight")

                try await upload.send(Array(body[half...]))
                let response = try await upload.readResponse()
                #expect(response?.status == 201, "\(response?.text ?? "no response")")
                #expect(response?.header("etag") == Digests.etag(body))
                let exit = try await node.waitForExit(within: .seconds(15))
                #expect(exit == .exited(0), "after signal \(signal): \(exit)\n\(node.log)")

                let restarted = try await runner.start()
                let summary = try #require(restarted.recoverySummary)
                #expect(summary["bytes.cut"] == "0")
                #expect(summary["blobs"] == "1")
                let client = try await restarted.client()
                defer { client.close() }
                let read = try await client.send(.GET, "/store/graceful")
                #expect(read.status == 200)
                #expect(sameBytes(read.body, body))
                #expect(read.header("etag") == Digests.etag(body))
            }
        }

        /// Whether a TCP connection to `port` can be made (once the node closed its listener, it is refused).
        static func acceptsConnections(port: Int) async -> Bool {
            guard let connection = try? await RawConnection.connect(port: port) else { return false }
            connection.close()
            return true
        }

        /// The startup log's recovery summary reports what recovery did: a fresh directory has nothing; after a
        /// SIGKILL in the middle of a large upload and a torn tail (bytes appended to the last segment) it counts
        /// the live blobs, the bytes cut and the orphaned spill file removed, and the acknowledged blobs are intact.
        @Test(.timeLimit(.minutes(2))) func startupLogsTheRecoverySummary() async throws {
            try await withNodeRunner { runner in
                let node = try await runner.start()
                let fresh = try #require(node.recoverySummary, "no recovery summary in:\n\(node.log)")
                for field in ["segments", "records", "blobs", "bytes.cut", "orphans.removed", "ms"] {
                    #expect(fresh[field] != nil, "recovery summary without \(field): \(fresh)")
                }
                #expect(fresh["blobs"] == "0")
                #expect(fresh["bytes.cut"] == "0")
                #expect(fresh["orphans.removed"] == "0")

                let client = try await node.client()
                defer { client.close() }
                let bodies = (0..<3).map { TestData.bytes(500 + $0, seed: UInt64(100 + $0)) }
                for (index, body) in bodies.enumerated() {
                    #expect(try await client.send(.PUT, "/store/summary/\(index)", body: body).status == 201)
                }
                // A large upload, half sent: its spill file is still partial when the node dies.
                let upload = try await node.raw()
                defer { upload.close() }
                try await upload.send(
                    RawRequest.head("PUT", "/store/summary/large", [("Content-Length", "\(3 * TestData.mib)")])
                        + TestData.bytes(2 * TestData.mib, seed: 9))
                let blobs = runner.directory.data + "/blobs"
                let partial = try await eventually(within: .seconds(10)) {
                    Self.files(in: blobs).contains { $0.hasSuffix(".partial") }
                }
                #expect(partial, "no partial spill file in \(Self.files(in: blobs))")
                try await node.killHard()

                // A torn tail: bytes after the last record of the last segment.
                let segments = runner.directory.data + "/segments"
                let last = try #require(Self.files(in: segments).last)
                let handle = try #require(FileHandle(forWritingAtPath: segments + "/" + last))
                try handle.seekToEnd()
                try handle.write(contentsOf: TestData.bytes(100, seed: 77))
                try handle.close()

                let restarted = try await runner.start()
                let summary = try #require(restarted.recoverySummary)
                #expect(summary["blobs"] == "3")
                #expect(summary["bytes.cut"] == "100")
                #expect(summary["orphans.removed"].flatMap { Int($0) } ?? 0 >= 1, "\(summary)")
                #expect(summary["ms"].flatMap { Int($0) } != nil)
                #expect(!Self.files(in: blobs).contains { $0.hasSuffix(".partial") })
                #expect(Self.files(in: runner.directory.data + "/recovery").contains { $0.hasSuffix(".cut") })
                let again = try await restarted.client()
                defer { again.close() }
                for (index, body) in bodies.enumerated() {
                    let read = try await again.send(.GET, "/store/summary/\(index)")
                    #expect(read.status == 200 && sameBytes(read.body, body))
                }
                #expect(try await again.send(.GET, "/store/summary/large").status == 404)
            }
        }

        static func files(in directory: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
        }
    }
}

/// Polls `condition` until it holds or `limit` passes; returns whether it held.
func eventually(within limit: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(5))
    }
    return try await condition()
}
