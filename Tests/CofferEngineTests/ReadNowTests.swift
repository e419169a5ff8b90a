import CofferCore
import NIOCore
import Testing

@testable import CofferEngine

/// `readNow`: what the engine can answer without I/O (the index, and the cache of small blobs), and that it never
/// answers with anything but the newest version.
@Suite struct ReadNowTests {
    private func now(
        _ engine: LogEngine, _ raw: String, _ options: ReadOptions = ReadOptions()
    ) -> Result<
        BlobRead, StoreError
    >? {
        engine.readNow(key(raw), options: options)
    }

    private func isNotFound(_ result: Result<BlobRead, StoreError>?) -> Bool {
        if case .failure(let error) = result { return error == .notFound }
        return false
    }

    private func bytes(_ read: BlobRead) -> [UInt8]? {
        guard case .buffer(let buffer) = read.body else { return nil }
        return Array(buffer.readableBytesView)
    }

    @Test func answersFromTheIndexAndTheCache() async throws {
        try await withTestDirectory { directory in
            try await withEngine(testConfiguration(directory)) { engine in
                #expect(isNotFound(now(engine, "absent")))
                let small = randomBytes(1000, seed: 1)
                try await engine.put("small", small)
                let full = try #require(now(engine, "small")).get()
                #expect(full.decision == .full)
                #expect(bytes(full) == small)
                let part = try #require(now(engine, "small", ReadOptions(range: .from(first: 10, last: 19)))).get()
                #expect(part.decision == .partial(10..<20))
                #expect(bytes(part) == Array(small[10..<20]))
                let head = try #require(now(engine, "small", ReadOptions(includeBody: false))).get()
                #expect(head.body == nil && head.info.size == 1000)
                let etag = full.info.etag
                let unchanged = try #require(now(engine, "small", ReadOptions(ifNoneMatch: [etag]))).get()
                #expect(unchanged.decision == .notModified)
                // Overwritten: only the new version is ever answered; deleted: not found.
                let newer = randomBytes(700, seed: 2)
                try await engine.put("small", newer)
                #expect(bytes(try #require(now(engine, "small")).get()) == newer)
                _ = try await engine.remove("small")
                #expect(isNotFound(now(engine, "small")))
            }
        }
    }

    @Test func spilledAndUncachedBlobsNeedTheRegularPath() async throws {
        try await withTestDirectory { directory in
            let big = randomBytes(3 * testInlineThreshold, seed: 3)
            let small = randomBytes(100, seed: 4)
            try await withEngine(testConfiguration(directory)) { engine in
                try await engine.put("big", big)
                try await engine.put("small", small)
                #expect(now(engine, "big") == nil)
                // Metadata alone is still answered at once.
                #expect(try #require(now(engine, "big", ReadOptions(includeBody: false))).get().info.size == 3 * 4096)
            }
            try await withEngine(testConfiguration(directory)) { (engine) async throws in
                // A fresh start has an empty cache; a regular read fills it.
                #expect(now(engine, "small") == nil)
                #expect(try await engine.get("small") == small)
                #expect(bytes(try #require(now(engine, "small")).get()) == small)
            }
        }
    }

    @Test func theCacheStaysWithinItsBudget() async throws {
        try await withTestDirectory { directory in
            let configuration = testConfiguration(directory) { $0.readCacheBytes = 10 * 1024 }
            try await withEngine(configuration) { engine in
                for i in 0..<40 { try await engine.put("k\(i)", randomBytes(1024, seed: UInt64(i))) }
                let cached = (0..<40).filter { now(engine, "k\($0)") != nil }
                #expect(!cached.isEmpty)
                #expect(cached.count <= 10)
                #expect(cached.contains(39))  // the newest stays; the oldest went first
                #expect(!cached.contains(0))
                for i in cached {
                    #expect(bytes(try #require(now(engine, "k\(i)")).get()) == randomBytes(1024, seed: UInt64(i)))
                }
            }
        }
    }
}
