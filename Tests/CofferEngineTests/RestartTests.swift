import CofferCore
import CofferEngineTesting
import CofferTestKit
import Testing

@testable import CofferEngine

/// A thousand blobs of varied sizes (inline and spilled, overwritten and deleted) survive a restart exactly.
@Suite("Restart")
struct RestartTests {
    /// Version `version` of blob `i`: mostly small, every fifth one spilled.
    private static func value(_ i: Int, version: Int) -> [UInt8] {
        let seed = UInt64(i * 10 + version)
        var generator = SplitMix64(seed: seed)
        let size = i % 5 == 0 ? 4097 + Int(generator.next() % 30_000) : Int(generator.next() % 2500)
        return generator.bytes(size)
    }

    private static func name(_ i: Int) -> String { "restart/\(i % 7)/blob-\(i)" }

    @Test("1,000 blobs, overwritten and deleted ones included, read back byte-exact after reopen")
    func thousandBlobs() async throws {
        try await withTestDirectory { directory async throws in
            // Small segments, so the log spans several files.
            let configuration = testConfiguration(directory) { $0.segmentSize = 512 * 1024 }
            let count = 1000
            var expected: [String: (bytes: [UInt8], info: BlobInfo)] = [:]
            var records = 0
            try await withEngine(configuration) { engine async throws in
                // Writes go in concurrent waves of 50 (so group commit batches them); overwrites and deletes follow.
                for wave in stride(from: 0, to: count, by: 50) {
                    let results = try await withThrowingTaskGroup(of: (Int, WriteResult).self) { group in
                        for i in wave..<min(count, wave + 50) {
                            group.addTask {
                                let contentType = i % 3 == 0 ? "image/png" : nil
                                let options = WriteOptions(contentType: contentType)
                                return (
                                    i, try await engine.put(Self.name(i), Self.value(i, version: 1), options: options)
                                )
                            }
                        }
                        return try await group.reduce(into: [(Int, WriteResult)]()) { $0.append($1) }
                    }
                    for (i, result) in results {
                        #expect(result.created)
                        expected[Self.name(i)] = (Self.value(i, version: 1), result.info)
                    }
                    records += results.count
                }
                for i in stride(from: 0, to: count, by: 4) {
                    let result = try await engine.put(Self.name(i), Self.value(i, version: 2))
                    #expect(!result.created)
                    expected[Self.name(i)] = (Self.value(i, version: 2), result.info)
                    records += 1
                }
                for i in stride(from: 1, to: count, by: 10) {
                    let removed = try await engine.remove(Self.name(i))
                    #expect(removed == expected[Self.name(i)]?.info)
                    expected[Self.name(i)] = nil
                    records += 1
                }
                #expect(engine.count == expected.count)
            }

            let segmentFiles = Files.list(directory.segments)
            #expect(segmentFiles.count >= 3)
            let spilled = expected.values.filter { $0.bytes.count > testInlineThreshold }.count
            #expect(spilled > 100)
            #expect(Files.list(directory.blobs).count == spilled)

            try await withEngine(configuration) { engine async throws in
                let report = engine.recovery
                #expect(report.segmentsScanned == segmentFiles.count)
                #expect(report.recordsScanned == records)
                #expect(report.liveBlobs == expected.count)
                #expect(report.bytesCut == 0 && report.corruptRegions == 0)
                #expect(report.orphansRemoved == 0 && report.missingSpills == 0)
                #expect(report.milliseconds >= 0 && report.milliseconds < 60_000)
                #expect(engine.count == expected.count)
                for i in 0..<count {
                    let name = Self.name(i)
                    guard let (bytes, info) = expected[name] else {
                        await #expect(throws: StoreError.notFound, "\(name)") { try await engine.get(name) }
                        continue
                    }
                    let read = try await engine.read(key(name), options: ReadOptions())
                    #expect(read.info == info, "\(name)")
                    #expect(try await collect(read.body) == bytes, "\(name)")
                }
                // The log continues: a write after the restart gets a higher sequence than anything before it.
                let highest = engine.state.withLock { $0.index.values.map(\.sequence).max() ?? 0 }
                try await engine.put("after-restart", [1])
                #expect(engine.lookup("after-restart")!.sequence > highest)
            }
        }
    }
}
