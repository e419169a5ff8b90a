import CofferTestKit
import Foundation
import Testing

extension ProcessTests {
    /// A client that pipelines GETs of a 1 MiB blob and never reads the answers: the node stops reading that
    /// connection while its answer is not sent, so it holds about one answer, not one per request (before: 1,500
    /// requests of 45 bytes took the node from 47 MB to 1.58 GB).
    @Suite struct PipelinedReadsMemoryTests {
        @Test(.timeLimit(.minutes(2))) func pipeliningWithoutReadingCostsOneAnswer() async throws {
            try await withNodeRunner { runner in
                let node = try await runner.start()
                let blob = TestData.bytes(TestData.mib, seed: 1500)
                let client = try await node.client()
                #expect(try await client.send(.PUT, "/store/big", body: blob).status == 201)
                #expect(try await client.send(.GET, "/store/big").body.count == blob.count)  // in the read cache
                client.close()
                let baseline = try #require(node.residentBytes)

                let connection = try await node.raw()
                defer { connection.close() }
                let request = Array("GET /store/big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
                var sent = 0
                for _ in 0..<15 {
                    // 100 requests at a time; the node reads what fits in the socket buffers, answers, and stops.
                    guard await connection.trySend(Array([[UInt8]](repeating: request, count: 100).joined())) else {
                        break
                    }
                    sent += 100
                }
                // Give the node time to do whatever it would do with what it read.
                var peakGrowth = 0
                for _ in 0..<20 {
                    try await Task.sleep(for: .milliseconds(100))
                    peakGrowth = max(peakGrowth, (node.residentBytes ?? 0) - baseline)
                }
                let peak = try #require(node.peakResidentBytes)
                let mib = { (bytes: Int) in String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
                print(
                    "pipelined GETs of 1 MiB, never read: \(sent) requests sent; RSS grew by at most"
                        + " \(mib(peakGrowth)); VmHWM \(mib(peak))")
                #expect(peak < 64 << 20, "the node's peak RSS reached \(mib(peak))")
                #expect(node.isRunning)
                // The connection still works for a client that reads: the first answer is the whole blob.
                let first = try await connection.readResponse()
                #expect(first?.status == 200)
                #expect(first?.body.count == blob.count)
            }
        }
    }
}
