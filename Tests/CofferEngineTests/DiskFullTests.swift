import CofferCore
import Foundation
import Testing

@testable import CofferEngine

/// The small file system `scripts/with-small-fs.sh` mounts for these tests (`make test` runs the suite through it):
/// ext4 on a loop device, or a size-limited tmpfs where loop devices are unavailable. Mounting happens outside the
/// test process on purpose: a `fork` from here would briefly hold other tests' descriptors (their directory locks).
enum SmallFileSystem {
    /// The mount point and what it is, or `nil` (with a printed reason) when the tests run without one.
    static func mounted() -> (path: String, kind: String)? {
        let environment = ProcessInfo.processInfo.environment
        guard let path = environment["COFFER_SMALL_FS"], !path.isEmpty else {
            print(
                "disk-full: COFFER_SMALL_FS is not set (run through scripts/with-small-fs.sh, as make test does); skipped"
            )
            return nil
        }
        return (path, environment["COFFER_SMALL_FS_KIND"] ?? "a small file system")
    }
}

/// Filling a real file system: writes answer insufficientStorage and change nothing, every earlier blob still reads
/// byte-exact, deletes still work (the space reserve), and once deleted space is compacted away writes work again.
@Suite(.serialized) struct DiskFullTests {
    @Test func fillDeleteCompactAndWriteAgain() async throws {
        guard let fs = SmallFileSystem.mounted() else { return }
        let directory = TestDirectory(path: fs.path + "/data")
        defer { directory.remove() }
        var configuration = EngineConfiguration(directory: directory.path)
        // Segments larger than the reserve: rewriting a fully live one on the full disk cannot fit.
        configuration.segmentSize = 512 * 1024
        configuration.inlineThreshold = 32 * 1024
        configuration.reserveBytes = 128 * 1024
        configuration.compactionInterval = nil

        var acked: [String: [UInt8]] = [:]
        var refused = 0
        try await withEngine(configuration) { engine in
            // Fill: alternate inline (8 KiB) and spilled (300 KiB) blobs until a write is refused, then go on with
            // inline ones until even those are refused 8 times in a row.
            var i = 0
            var consecutive = 0
            var largeRefused = 0
            while consecutive < 8 && i < 20_000 {
                let size = refused == 0 && i % 2 == 1 ? 300 * 1024 : 8 * 1024
                let body = randomBytes(size, seed: UInt64(i))
                do {
                    try await engine.put("b\(i)", body)
                    acked["b\(i)"] = body
                    consecutive = 0
                } catch let error as StoreError {
                    #expect(error == .insufficientStorage)
                    if size > testInlineThreshold { largeRefused += 1 }
                    refused += 1
                    consecutive += 1
                }
                i += 1
            }
            print("disk-full (\(fs.kind)): \(acked.count) blobs stored, then \(refused) writes refused with 507")
            #expect(acked.count > 20)
            #expect(consecutive == 8)
            // The first refusal hit a large upload while its spill file was being written (or refused it before).
            #expect(largeRefused >= 1)
            // Full: nothing partial is left, every acknowledged blob is intact, and a new write is still refused.
            #expect(!Files.list(directory.blobs).contains { $0.hasSuffix(".partial") })
            for (key, body) in acked { #expect(try await engine.get(key) == body) }
            await #expect(throws: StoreError.insufficientStorage) {
                try await engine.put("one-more", randomBytes(8 * 1024, seed: 999_999))
            }
            // ENOSPC while compacting: every sealed segment is still fully live, so rewriting one needs more room
            // than the disk has left. The pass fails, the segments stay, nothing is lost.
            let segmentsBefore = Files.list(directory.segments)
            #expect(segmentsBefore.count >= 2)  // at least one sealed segment to compact
            await #expect(throws: StoreError.insufficientStorage) { try await engine.compact(threshold: 0) }
            // Every segment is still there (the relocation may have started a new, empty, active segment first).
            #expect(Set(segmentsBefore).isSubset(of: Set(Files.list(directory.segments))))
            #expect(!Files.list(directory.segments).contains { $0.hasSuffix(".partial") })
            for (key, body) in acked { #expect(try await engine.get(key) == body) }
            // Deletes work on the full disk; then compaction reclaims the deleted inline blobs' log space.
            for key in acked.keys.sorted().enumerated().filter({ $0.offset % 2 == 0 }).map(\.element) {
                _ = try await engine.remove(key)
                acked[key] = nil
            }
            let report = try await engine.compact(threshold: 0.2)
            print(
                "disk-full: after deleting half, compaction removed \(report.segmentsCompacted) segments"
                    + " (\(report.bytesReclaimed) bytes)")
            #expect(report.segmentsCompacted > 0)
            // Writes succeed again (the reserve is taken back first).
            try await engine.put("after", randomBytes(300 * 1024, seed: 424_242))
            acked["after"] = randomBytes(300 * 1024, seed: 424_242)
            for (key, body) in acked { #expect(try await engine.get(key) == body) }
        }
        try await withEngine(configuration) { (engine) async throws in
            for (key, body) in acked { #expect(try await engine.get(key) == body) }
            #expect(engine.count == acked.count)
        }
    }
}
