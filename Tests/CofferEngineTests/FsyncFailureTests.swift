import CofferCore
import CofferEngineTesting
import Testing

@testable import CofferEngine

/// A failed fdatasync fails every write of its batch, rolls the segment back to where the batch began, and leaves
/// the engine writable.
@Suite("Group commit: failing fsync")
struct FsyncFailureTests {
    private static func v1(_ i: Int) -> [UInt8] { randomBytes(200, seed: UInt64(i)) }
    private static func v2(_ i: Int) -> [UInt8] { randomBytes(200, seed: UInt64(100 + i)) }

    @Test("a single failed write: io error, previous version intact, no garbage, next write fine, absent on reopen")
    func singleWrite() async throws {
        try await withTestDirectory { directory async throws in
            let io = FaultInjectingFileIO()
            let configuration = testConfiguration(directory, fileIO: io)
            let v1 = randomBytes(300, seed: 1)
            try await withEngine(configuration) { engine async throws in
                try await engine.put("k", v1)
                let size = try Files.size(directory.segment(1))
                io.update {
                    $0.pathFilter = "/segments/"
                    $0.failingSyncs = 1
                }
                await #expect(throws: StoreError.io) { try await engine.put("k", randomBytes(300, seed: 2)) }
                #expect(try Files.size(directory.segment(1)) == size)
                #expect(try await engine.get("k") == v1)
                io.update { $0.failingSyncs = 1 }
                await #expect(throws: StoreError.io) { try await engine.put("new", [1, 2, 3]) }
                await #expect(throws: StoreError.notFound) { try await engine.get("new") }
                io.update { $0.failingSyncs = 1 }
                await #expect(throws: StoreError.io) { try await engine.remove("k") }
                #expect(try await engine.get("k") == v1)
                #expect(try Files.size(directory.segment(1)) == size)
                try await engine.put("after", [4, 5])
                #expect(try await engine.get("after") == [4, 5])
            }
            try await withEngine(configuration) { engine async throws in
                #expect(try await engine.get("k") == v1)
                #expect(try await engine.getIfPresent("new") == nil)
                #expect(try await engine.get("after") == [4, 5])
                #expect(engine.recovery.bytesCut == 0 && engine.recovery.corruptRegions == 0)
            }
        }
    }

    @Test("every write of the failed batch fails together; the segment keeps exactly the committed records")
    func wholeBatch() async throws {
        try await withTestDirectory { directory async throws in
            let gate = GateFileIO()
            let io = FaultInjectingFileIO(base: gate)
            let configuration = testConfiguration(directory, fileIO: io)
            let keys = (0..<10).map { "k\($0)" }
            var failed: Set<Int> = []
            try await withEngine(configuration) { engine async throws in
                for i in keys.indices { try await engine.put(keys[i], Self.v1(i)) }
                let recordLength = engine.lookupLength("k0")

                gate.holdNextSegmentSync()
                let first = Task { try await engine.put("held", [1]) }
                await gate.waitUntilHeld()
                let writesBeforeRelease = gate.segmentWrites.count
                let (ended, endedContinuation) = AsyncStream.makeStream(of: Void.self)
                failed = try await withThrowingTaskGroup(of: Int?.self) { group in
                    for i in keys.indices {
                        group.addTask {
                            let body = ChunkedBody(Self.v2(i), onEnd: { endedContinuation.yield() })
                            do {
                                _ = try await engine.write(key(keys[i]), body: body, options: WriteOptions())
                                return nil
                            } catch let error as StoreError {
                                #expect(error == .io)
                                return i
                            }
                        }
                    }
                    var count = 0
                    for await _ in ended {
                        count += 1
                        if count == keys.count { break }
                    }
                    // The held batch has passed its fault check; the next fdatasync (the queued batch's) fails.
                    io.update {
                        $0.pathFilter = "/segments/"
                        $0.failingSyncs = 1
                    }
                    gate.release()
                    return try await group.reduce(into: Set<Int>()) { if let i = $1 { $0.insert(i) } }
                }
                _ = try await first.value

                // The failed batch was one pwrite holding all its records, and the writes that failed are exactly
                // the records it held.
                let failedWrite = gate.segmentWrites[writesBeforeRelease]
                #expect(failedWrite == failed.count * recordLength)
                #expect(failed.count > 1, "the writes were queued behind the held batch")
                let committed = keys.count - failed.count
                let expectedSize =
                    Int64(Format.segmentHeaderSize + (keys.count + committed) * recordLength)
                    + Int64(engine.lookupLength("held"))
                #expect(try Files.size(directory.segment(1)) == expectedSize)
                for i in keys.indices {
                    #expect(
                        try await engine.get(keys[i]) == (failed.contains(i) ? Self.v1(i) : Self.v2(i)), "\(keys[i])")
                }
                try await engine.put("after", [2])
            }
            try await withEngine(configuration) { engine async throws in
                for i in keys.indices {
                    #expect(
                        try await engine.get(keys[i]) == (failed.contains(i) ? Self.v1(i) : Self.v2(i)), "\(keys[i])")
                }
                #expect(try await engine.get("after") == [2])
                #expect(try await engine.get("held") == [1])
            }
        }
    }

    @Test("a failed fsync of a spill file fails the write and removes the spill file")
    func spillSync() async throws {
        try await withTestDirectory { directory async throws in
            let io = FaultInjectingFileIO()
            try await withEngine(testConfiguration(directory, fileIO: io)) { engine async throws in
                let v1 = randomBytes(10_000, seed: 1)
                try await engine.put("k", v1)
                let spills = Files.list(directory.blobs)
                io.update {
                    $0.pathFilter = "/blobs/"
                    $0.failingSyncs = 1
                }
                await #expect(throws: StoreError.io) { try await engine.put("k", randomBytes(20_000, seed: 2)) }
                #expect(Files.list(directory.blobs) == spills)
                #expect(try await engine.get("k") == v1)
            }
        }
    }

    @Test("when even the rollback fails, writes are refused until restart; reads go on; a restart recovers")
    func rollbackFailure() async throws {
        try await withTestDirectory { directory async throws in
            let io = FaultInjectingFileIO()
            let configuration = testConfiguration(directory, fileIO: io)
            try await withEngine(configuration) { engine async throws in
                try await engine.put("k", [1])
                io.update {
                    $0.pathFilter = "/segments/"
                    $0.failingSyncs = 2  // the write's fdatasync and the rollback's
                }
                await #expect(throws: StoreError.io) { try await engine.put("k", [2]) }
                await #expect(throws: StoreError.io) { try await engine.put("other", [3]) }
                await #expect(throws: StoreError.io) { try await engine.remove("k") }
                #expect(try await engine.get("k") == [1])
            }
            try await withEngine(configuration) { engine async throws in
                #expect(try await engine.get("k") == [1])
                try await engine.put("other", [3])
                #expect(try await engine.get("other") == [3])
            }
        }
    }
}
