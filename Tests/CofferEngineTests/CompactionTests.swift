import CofferCore
import CofferEngineTesting
import Testing

@testable import CofferEngine

/// Compaction: sealed segments full of garbage are rewritten online and removed, and nothing live or deleted changes,
/// before or after a restart.
@Suite struct CompactionTests {
    /// Small segments so a few kilobytes of churn make several sealed ones; the background compactor is off so each
    /// test decides when compaction runs.
    private func configuration(_ directory: TestDirectory, fileIO: (any FileIO)? = nil) -> EngineConfiguration {
        testConfiguration(directory, fileIO: fileIO) { configuration in
            configuration.segmentSize = 8 * 1024
            configuration.compactionInterval = nil
        }
    }

    private func segmentFiles(_ directory: TestDirectory) -> [String] {
        Files.list(directory.segments).filter { $0.hasSuffix(".seg") }
    }

    private func totalSegmentBytes(_ directory: TestDirectory) throws -> Int64 {
        try segmentFiles(directory).reduce(0) { $0 + (try Files.size(directory.segments + "/" + $1)) }
    }

    @Test func reclaimsOverwrittenAndDeletedBlobs() async throws {
        try await withTestDirectory { directory in
            var expected: [String: [UInt8]] = [:]
            try await withEngine(configuration(directory)) { (engine) async throws in
                for round in 0..<6 {
                    for i in 0..<12 {
                        let body = randomBytes(700 + i, seed: UInt64(round * 100 + i))
                        try await engine.put("k\(i)", body)
                        expected["k\(i)"] = body
                    }
                }
                for i in stride(from: 0, to: 12, by: 3) {
                    _ = try await engine.remove("k\(i)")
                    expected["k\(i)"] = nil
                }
                let filesBefore = segmentFiles(directory).count
                let bytesBefore = try totalSegmentBytes(directory)
                let report = try await engine.compact(threshold: 0.3)
                #expect(report.segmentsCompacted > 0)
                #expect(report.segmentsKept == 0)
                #expect(segmentFiles(directory).count < filesBefore)
                #expect(try totalSegmentBytes(directory) < bytesBefore / 2)
                for i in 0..<12 {
                    #expect(try await engine.getIfPresent("k\(i)") == expected["k\(i)"])
                }
            }
            try await withEngine(configuration(directory)) { (engine) async throws in
                #expect(engine.recovery.corruptRegions == 0)
                for i in 0..<12 {
                    #expect(try await engine.getIfPresent("k\(i)") == expected["k\(i)"])
                }
            }
        }
    }

    /// A tombstone in a compacted segment must survive while an older put of its key sits in a segment that was not
    /// compacted; dropping it would bring the deleted blob back at the next restart.
    @Test func tombstoneKeepsHidingAnOlderPut() async throws {
        try await withTestDirectory { directory in
            try await withEngine(configuration(directory)) { (engine) async throws in
                // Segment 1: the doomed put plus live filler, so segment 1 stays mostly live and is not compacted.
                try await engine.put("doomed", randomBytes(600, seed: 1))
                for i in 0..<9 { try await engine.put("keep\(i)", randomBytes(700, seed: UInt64(10 + i))) }
                #expect(segmentFiles(directory).count == 1)
                try await engine.put("keep9", randomBytes(700, seed: 19))
                #expect(segmentFiles(directory).count == 2)  // segment 1 is sealed and holds the doomed put
                // Later segments: the tombstone among heavy churn on one key.
                _ = try await engine.remove("doomed")
                for round in 0..<40 { try await engine.put("churn", randomBytes(600, seed: UInt64(100 + round))) }
                let usage = try await engine.segmentUsage()
                #expect(usage.first?.id == 1)
                #expect((usage.first?.garbageRatio ?? 1) < 0.5)
                let report = try await engine.compact(threshold: 0.5)
                #expect(report.segmentsCompacted > 0)
                #expect(Files.exists(directory.segment(1)))
                #expect(try await engine.getIfPresent("doomed") == nil)
            }
            try await withEngine(configuration(directory)) { (engine) async throws in
                #expect(try await engine.getIfPresent("doomed") == nil)
                #expect(try await engine.getIfPresent("churn") == randomBytes(600, seed: 139))
                for i in 0..<10 {
                    #expect(try await engine.getIfPresent("keep\(i)") == randomBytes(700, seed: UInt64(10 + i)))
                }
            }
        }
    }

    @Test func spilledBlobsMoveWithoutTouchingTheirFiles() async throws {
        try await withTestDirectory { directory in
            let big = randomBytes(3 * testInlineThreshold + 17, seed: 7)
            try await withEngine(configuration(directory)) { (engine) async throws in
                try await engine.put("big", big)
                let spillFiles = Files.list(directory.blobs)
                for round in 0..<30 { try await engine.put("churn", randomBytes(500, seed: UInt64(round))) }
                let report = try await engine.compact(threshold: 0.3)
                #expect(report.segmentsCompacted > 0)
                #expect(report.recordsRelocated > 0)
                #expect(Files.list(directory.blobs) == spillFiles)
                #expect(try await engine.get("big") == big)
            }
            try await withEngine(configuration(directory)) { (engine) async throws in
                #expect(try await engine.get("big") == big)
                #expect(engine.recovery.orphansRemoved == 0)
            }
        }
    }

    @Test func neverTouchesTheActiveSegment() async throws {
        try await withTestDirectory { directory in
            try await withEngine(configuration(directory)) { (engine) async throws in
                for round in 0..<5 { try await engine.put("a", randomBytes(300, seed: UInt64(round))) }
                // Everything is in segment 1, still active: mostly garbage, but not sealed.
                #expect(segmentFiles(directory).count == 1)
                let report = try await engine.compact(threshold: 0)
                #expect(report.segmentsCompacted == 0)
                #expect(Files.exists(directory.segment(1)))
                #expect(try await engine.get("a") == randomBytes(300, seed: 4))
            }
        }
    }

    /// Reads and writes go on during compaction; every read returns one complete version that was written.
    @Test func runsOnlineUnderConcurrentReadsAndWrites() async throws {
        try await withTestDirectory { directory in
            let versions = 8
            func body(_ key: Int, _ version: Int) -> [UInt8] {
                randomBytes(400 + key, seed: UInt64(key * 1000 + version))
            }
            try await withEngine(configuration(directory)) { (engine) async throws in
                for key in 0..<10 { try await engine.put("k\(key)", body(key, 0)) }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for version in 1..<versions {
                            for key in 0..<10 { try await engine.put("k\(key)", body(key, version)) }
                        }
                    }
                    group.addTask {
                        for _ in 0..<6 { _ = try await engine.compact(threshold: 0.2) }
                    }
                    group.addTask {
                        for round in 0..<200 {
                            let key = round % 10
                            let got = try await engine.get("k\(key)")
                            #expect((0..<versions).contains { body(key, $0) == got })
                        }
                    }
                    try await group.waitForAll()
                }
                _ = try await engine.compact(threshold: 0.2)
                for key in 0..<10 { #expect(try await engine.get("k\(key)") == body(key, versions - 1)) }
            }
            try await withEngine(configuration(directory)) { (engine) async throws in
                for key in 0..<10 { #expect(try await engine.get("k\(key)") == body(key, versions - 1)) }
            }
        }
    }

    /// A full disk while relocating fails the pass; the segment stays and nothing is lost.
    @Test func fullDiskDuringRelocationKeepsTheSegment() async throws {
        try await withTestDirectory { directory in
            let faults = FaultInjectingFileIO()
            try await withEngine(configuration(directory, fileIO: faults)) { (engine) async throws in
                for round in 0..<4 {
                    for i in 0..<10 { try await engine.put("k\(i)", randomBytes(600, seed: UInt64(round * 10 + i))) }
                }
                // Segments with nothing live go without a write; those with live records must stay.
                let holdingLive = try await engine.segmentUsage().filter { $0.liveBytes > 0 }.map(\.id)
                #expect(!holdingLive.isEmpty)
                faults.update { $0.bytesUntilFull = 0 }
                await #expect(throws: StoreError.insufficientStorage) { try await engine.compact(threshold: 0.3) }
                for id in holdingLive { #expect(Files.exists(directory.segment(id))) }
                faults.update { $0.bytesUntilFull = nil }
                for i in 0..<10 { #expect(try await engine.get("k\(i)") == randomBytes(600, seed: UInt64(30 + i))) }
                let report = try await engine.compact(threshold: 0.3)
                #expect(report.segmentsCompacted > 0)
            }
            try await withEngine(configuration(directory)) { (engine) async throws in
                for i in 0..<10 { #expect(try await engine.get("k\(i)") == randomBytes(600, seed: UInt64(30 + i))) }
            }
        }
    }
}
