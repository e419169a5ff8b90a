import CofferCore
import CofferEngineTesting
import Testing

@testable import CofferEngine

/// A full disk and short writes: ENOSPC is `insufficientStorage` with nothing changed and no spill file left;
/// short writes still store exact bytes.
@Suite("Storage faults: full disk, short writes")
struct StorageFaultTests {
    @Test("ENOSPC while appending a record: insufficientStorage, previous version intact, segment rolled back")
    func fullSegment() async throws {
        try await withTestDirectory { directory async throws in
            let io = FaultInjectingFileIO()
            let configuration = testConfiguration(directory, fileIO: io)
            let v1 = randomBytes(1000, seed: 1)
            try await withEngine(configuration) { engine async throws in
                try await engine.put("k", v1)
                let size = try Files.size(directory.segment(1))
                // 100 bytes fit, then the disk is full: part of the record reaches the file before the error.
                io.update {
                    $0.pathFilter = "/segments/"
                    $0.bytesUntilFull = 100
                }
                await #expect(throws: StoreError.insufficientStorage) {
                    try await engine.put("k", randomBytes(1000, seed: 2))
                }
                #expect(try Files.size(directory.segment(1)) == size)
                #expect(try await engine.get("k") == v1)
                await #expect(throws: StoreError.insufficientStorage) { try await engine.remove("k") }
                #expect(try await engine.get("k") == v1)
                io.update { $0.bytesUntilFull = nil }
                try await engine.put("k2", [7])
            }
            try await withEngine(configuration) { engine async throws in
                #expect(engine.recovery.bytesCut == 0)
                #expect(try await engine.get("k") == v1)
                #expect(try await engine.get("k2") == [7])
            }
        }
    }

    @Test("ENOSPC while streaming a spill file: insufficientStorage, spill file removed, previous version intact")
    func fullSpill() async throws {
        try await withTestDirectory { directory async throws in
            let io = FaultInjectingFileIO()
            // Small spill chunks, so the failure hits a mid-body flush as well as the final one.
            let configuration = testConfiguration(directory, fileIO: io) { $0.spillWriteChunkSize = 16 * 1024 }
            let v1 = randomBytes(50_000, seed: 3)
            try await withEngine(configuration) { engine async throws in
                try await engine.put("k", v1)
                let spills = Files.list(directory.blobs)
                #expect(spills.count == 1)
                for room: Int64 in [0, 1000, 40_000, 200_000 + 10] {
                    io.update {
                        $0.pathFilter = "/blobs/"
                        $0.bytesUntilFull = room
                    }
                    await #expect(throws: StoreError.insufficientStorage, "room \(room)") {
                        try await engine.put("k", randomBytes(200_000, seed: 4))
                    }
                    #expect(Files.list(directory.blobs) == spills, "room \(room)")
                    #expect(try await engine.get("k") == v1)
                }
                io.update { $0.bytesUntilFull = nil }
                let v2 = randomBytes(200_000, seed: 5)
                try await engine.put("k", v2)
                #expect(try await engine.get("k") == v2)
                #expect(Files.list(directory.blobs).count == 1)
            }
        }
    }

    @Test("ENOSPC on the record after the spill file was finished: the finished spill file is removed")
    func fullSegmentAfterSpill() async throws {
        try await withTestDirectory { directory async throws in
            let io = FaultInjectingFileIO()
            try await withEngine(testConfiguration(directory, fileIO: io)) { engine async throws in
                io.update {
                    $0.pathFilter = "/segments/"
                    $0.bytesUntilFull = 0
                }
                await #expect(throws: StoreError.insufficientStorage) {
                    try await engine.put("k", randomBytes(100_000, seed: 6))
                }
                #expect(Files.list(directory.blobs).isEmpty)
                await #expect(throws: StoreError.notFound) { try await engine.get("k") }
            }
        }
    }

    @Test("short writes (at most 7 bytes per pwrite) still store exact bytes, inline and spilled")
    func shortWrites() async throws {
        try await withTestDirectory { directory async throws in
            var rules = FaultInjectingFileIO.Rules()
            rules.maxBytesPerWrite = 7
            let io = FaultInjectingFileIO(rules: rules)
            let configuration = testConfiguration(directory, fileIO: io)
            let blobs: [(String, [UInt8])] = [
                ("empty", []), ("small", randomBytes(13, seed: 7)),
                ("inline", randomBytes(testInlineThreshold, seed: 8)),
                ("spilled", randomBytes(Format.spillBlockSize + 12_345, seed: 9)),
            ]
            try await withEngine(configuration) { engine async throws in
                for (name, bytes) in blobs { try await engine.put(name, bytes, chunkSize: 1000) }
                for (name, bytes) in blobs { #expect(try await engine.get(name) == bytes, "\(name)") }
            }
            try await withEngine(configuration) { engine async throws in
                #expect(engine.recovery.bytesCut == 0 && engine.recovery.corruptRegions == 0)
                for (name, bytes) in blobs { #expect(try await engine.get(name) == bytes, "\(name)") }
            }
        }
    }
}
