import CofferCore
import Crypto
import NIOCore
import Testing

@testable import CofferGateway

/// Memory of a streamed transfer, measured as the test process's RSS: the suite's name contains `ConstantMemory`,
/// and `make unit-test` runs such suites alone, after the others (any test running beside it would move the RSS).
@Suite("S3BackendConstantMemoryTests")
struct S3BackendConstantMemoryTests {
    @Test("a 64 MiB object streams up and down at constant memory, byte-exact by SHA-256")
    func streamed64MiB() async throws {
        let chunkSize = 64 * 1024
        let chunkCount = 1024  // 64 MiB
        let total = Int64(chunkSize * chunkCount)
        try await MotoServer.withServer { moto in
            try await withBackend(moto) { backend in
                let rss = RSSMonitor()
                let upload = S3TestData.stream(chunkSize: chunkSize, count: chunkCount, seed: 7, rss: rss)
                let put = try await backend.put(
                    "object/big", body: .stream(length: total, upload.stream), contentType: nil)
                let sent = upload.digest.finish()
                #expect(put.size == total)
                #expect(put.etag == sent.md5, "the server stored exactly the bytes sent")

                let get = try await backend.get("object/big", range: nil)
                #expect(get.range == 0..<total)
                var hasher = SHA256()
                var received: Int64 = 0
                for try await chunk in get.body {
                    chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
                    received += Int64(chunk.readableBytes)
                    rss.sample()
                }
                #expect(received == total)
                #expect(S3TestData.hex(hasher.finalize()) == sent.sha256)

                let growthMiB = rss.peakGrowthBytes / (1 << 20)
                print("streamed 64 MiB up and down: RSS peak growth \(growthMiB) MiB (baseline \(rss.baselineMiB) MiB)")
                #expect(rss.peakGrowthBytes < 40 << 20, "RSS grew by \(growthMiB) MiB while streaming 64 MiB")
            }
        }
    }
}
