import CofferCore
import CofferEngineTesting
import NIOCore
import Testing

@testable import CofferEngine

/// Faults the other suites leave out, on a running engine: a failing fsync of the blobs or segments directory, a
/// failing fsync of a new segment, and an I/O error in the middle of streaming a spilled blob.
@Suite("Seam faults: directory fsyncs, rotation, mid-stream read errors")
struct SeamFaultTests {
    @Test("a failed fsync of the blobs directory fails the spilled write before its record; the spill file goes")
    func blobsDirectorySync() async throws {
        try await withTestDirectory { directory async throws in
            let io = FaultInjectingFileIO()
            let configuration = testConfiguration(directory, fileIO: io)
            let v1 = randomBytes(20_000, seed: 1)
            try await withEngine(configuration) { engine async throws in
                try await engine.put("big", v1)
                try await engine.put("small", [1])
                let spills = Files.list(directory.blobs)
                let segment = try Files.size(directory.segment(1))
                io.update {
                    $0.pathFilter = "/blobs/"
                    $0.failingDirectorySyncs = 1
                }
                await #expect(throws: StoreError.io) { try await engine.put("big", randomBytes(30_000, seed: 2)) }
                #expect(Files.list(directory.blobs) == spills, "the new spill file was removed")
                #expect(try Files.size(directory.segment(1)) == segment, "no record reached the log")
                #expect(try await engine.get("big") == v1)
                // Inline writes do not need the blobs directory; the engine stays writable.
                try await engine.put("small", [2])
                try await engine.put("big2", randomBytes(30_000, seed: 3))
            }
            try await withEngine(configuration) { engine async throws in
                #expect(engine.recovery.bytesCut == 0 && engine.recovery.orphansRemoved == 0)
                #expect(try await engine.get("big") == v1)
                #expect(try await engine.get("small") == [2])
                #expect(try await engine.get("big2") == randomBytes(30_000, seed: 3))
            }
        }
    }

    @Test("a failed fsync of the segments directory while rotating: the write fails, the new segment is removed")
    func segmentsDirectorySyncOnRotation() async throws {
        try await withTestDirectory { directory async throws in
            let io = FaultInjectingFileIO()
            let configuration = testConfiguration(directory, fileIO: io) {
                $0.segmentSize = 4096
                $0.compactionInterval = nil
            }
            var expected: [String: [UInt8]] = [:]
            try await withEngine(configuration) { engine async throws in
                // Four records fill a segment: eight fill two.
                for i in 0..<8 {
                    expected["k\(i)"] = randomBytes(900, seed: UInt64(i))
                    try await engine.put("k\(i)", expected["k\(i)"]!)
                }
                let segments = Files.list(directory.segments)
                #expect(segments.count >= 2)
                // The next write does not fit the active segment: it rotates, and the directory fsync fails.
                io.update {
                    $0.pathFilter = "/segments/"
                    $0.failingDirectorySyncs = 1
                }
                let size = try Files.size(directory.segments + "/" + segments.last!)
                #expect(size + 1000 > 4096)
                await #expect(throws: StoreError.io) { try await engine.put("k0", randomBytes(900, seed: 100)) }
                #expect(Files.list(directory.segments) == segments)
                #expect(try await engine.get("k0") == expected["k0"])
                expected["k0"] = randomBytes(900, seed: 101)
                try await engine.put("k0", expected["k0"]!)
                #expect(Files.list(directory.segments).count == segments.count + 1)
            }
            try await withEngine(configuration) { engine async throws in
                #expect(engine.recovery.bytesCut == 0 && engine.recovery.corruptRegions == 0)
                for (key, bytes) in expected { #expect(try await engine.get(key) == bytes, "\(key)") }
            }
        }
    }

    @Test("a failed fdatasync of a new segment's header: the write fails, the segment is removed, the next one works")
    func newSegmentHeaderSync() async throws {
        try await withTestDirectory { directory async throws in
            let io = FaultInjectingFileIO()
            let configuration = testConfiguration(directory, fileIO: io) {
                $0.segmentSize = 4096
                $0.compactionInterval = nil
            }
            try await withEngine(configuration) { engine async throws in
                for i in 0..<4 { try await engine.put("k\(i)", randomBytes(1500, seed: UInt64(i))) }
                let segments = Files.list(directory.segments)
                let next = String(format: "%016llx.seg", UInt64(segments.count + 1))
                io.update {
                    $0.pathFilter = next
                    $0.failingSyncs = 1
                }
                await #expect(throws: StoreError.io) { try await engine.put("k9", randomBytes(1500, seed: 9)) }
                #expect(Files.list(directory.segments) == segments)
                try await engine.put("k9", randomBytes(1500, seed: 10))
                #expect(Files.list(directory.segments).contains(next))
            }
            try await withEngine(configuration) { engine async throws in
                for i in 0..<4 { #expect(try await engine.get("k\(i)") == randomBytes(1500, seed: UInt64(i))) }
                #expect(try await engine.get("k9") == randomBytes(1500, seed: 10))
            }
        }
    }

    @Test("an I/O error in the middle of a spilled stream is an io error, the bytes before it are exact")
    func midStreamReadError() async throws {
        try await withTestDirectory { directory async throws in
            let io = FaultInjectingFileIO()
            let configuration = testConfiguration(directory, fileIO: io) { $0.readChunkSize = Format.spillBlockSize }
            try await withEngine(configuration) { engine async throws in
                let value = randomBytes(4 * Format.spillBlockSize + 10, seed: 5)
                try await engine.put("big", value)
                // Opening reads the header and the table; then one read per chunk: the third chunk fails.
                io.update {
                    $0.pathFilter = "/blobs/"
                    $0.readsBeforeFailure = 4
                    $0.failingReads = 1
                }
                let read = try await engine.read(key("big"), options: ReadOptions())
                let (prefix, error) = await collectUntilError(read.body)
                #expect((error as? StoreError) == .io)
                #expect(prefix.count == 2 * Format.spillBlockSize)
                #expect(prefix == Array(value[0..<prefix.count]))
                #expect(try await engine.get("big") == value)
            }
        }
    }

    @Test("an I/O error while compaction reads a segment fails the pass; nothing is lost, the next pass works")
    func compactionReadError() async throws {
        try await withTestDirectory { directory async throws in
            let io = FaultInjectingFileIO()
            let configuration = testConfiguration(directory, fileIO: io) {
                $0.segmentSize = 8 * 1024
                $0.compactionInterval = nil
            }
            try await withEngine(configuration) { engine async throws in
                for round in 0..<4 {
                    for i in 0..<10 { try await engine.put("k\(i)", randomBytes(600, seed: UInt64(round * 10 + i))) }
                }
                let segments = Files.list(directory.segments)
                io.update {
                    $0.pathFilter = "/segments/"
                    $0.failingReads = 1
                }
                await #expect(throws: (any Error).self) { try await engine.compact(threshold: 0.3) }
                for i in 0..<10 { #expect(try await engine.get("k\(i)") == randomBytes(600, seed: UInt64(30 + i))) }
                #expect(Files.list(directory.segments) == segments, "the failed pass removed no segment")
                let report = try await engine.compact(threshold: 0.3)
                #expect(report.segmentsCompacted > 0)
            }
            try await withEngine(configuration) { engine async throws in
                #expect(engine.recovery.corruptRegions == 0)
                for i in 0..<10 { #expect(try await engine.get("k\(i)") == randomBytes(600, seed: UInt64(30 + i))) }
            }
        }
    }
}
