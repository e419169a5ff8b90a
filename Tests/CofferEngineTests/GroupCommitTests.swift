import CofferCore
import CofferEngineTesting
import Testing

@testable import CofferEngine

/// Concurrent writes share fdatasync calls: one pwrite and one fdatasync per batch.
@Suite("Group commit: batching")
struct GroupCommitTests {
    @Test("200 concurrent writes complete with far fewer fdatasync calls than writes")
    func batching() async throws {
        try await withTestDirectory { directory async throws in
            let gate = GateFileIO()
            let io = FaultInjectingFileIO(base: gate)
            try await withEngine(testConfiguration(directory, fileIO: io)) { engine async throws in
                let writes = 200
                let syncsBefore = io.successfulSyncs
                let segmentWritesBefore = gate.segmentWrites.count

                // Hold the writer inside the first batch's fdatasync, queue the other writes behind it, then let go.
                gate.holdNextSegmentSync()
                let first = Task { try await engine.put("first", [0]) }
                await gate.waitUntilHeld()
                let (ended, endedContinuation) = AsyncStream.makeStream(of: Void.self)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<writes - 1 {
                        group.addTask {
                            let body = ChunkedBody(
                                randomBytes(100 + i, seed: UInt64(i)), chunkSize: 64,
                                onEnd: { endedContinuation.yield() })
                            _ = try await engine.write(key("w\(i)"), body: body, options: WriteOptions())
                        }
                    }
                    // Every body has been read to its end: its write is queued (or about to be).
                    var count = 0
                    for await _ in ended {
                        count += 1
                        if count == writes - 1 { break }
                    }
                    gate.release()
                    try await group.waitForAll()
                }
                _ = try await first.value

                let syncs = io.successfulSyncs - syncsBefore
                let batches = gate.segmentWrites.count - segmentWritesBefore
                #expect(syncs == batches, "one fdatasync per batch, one pwrite per batch")
                #expect(syncs <= writes / 10, "\(syncs) fdatasync calls for \(writes) writes")
                for i in 0..<writes - 1 {
                    #expect(try await engine.get("w\(i)") == randomBytes(100 + i, seed: UInt64(i)))
                }
                #expect(engine.count == writes)
            }
        }
    }

    @Test("a batch is bounded by maxBatchBytes")
    func batchByteCap() async throws {
        try await withTestDirectory { directory async throws in
            let gate = GateFileIO()
            let configuration = testConfiguration(directory, fileIO: gate) { $0.maxBatchBytes = 4096 }
            try await withEngine(configuration) { engine async throws in
                let before = gate.segmentWrites.count
                gate.holdNextSegmentSync()
                let first = Task { try await engine.put("first", [0]) }
                await gate.waitUntilHeld()
                let (ended, endedContinuation) = AsyncStream.makeStream(of: Void.self)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<20 {
                        group.addTask {
                            let body = ChunkedBody(
                                randomBytes(1000, seed: UInt64(i)), onEnd: { endedContinuation.yield() })
                            _ = try await engine.write(key("w\(i)"), body: body, options: WriteOptions())
                        }
                    }
                    var count = 0
                    for await _ in ended {
                        count += 1
                        if count == 20 { break }
                    }
                    gate.release()
                    try await group.waitForAll()
                }
                _ = try await first.value
                let batches = Array(gate.segmentWrites[(before + 1)...])
                // About 1,100 bytes per record: a batch ends with the first record that reaches 4 KiB, so it holds at
                // most four of them.
                let record = (0..<20).map { engine.lookupLength("w\($0)") }.max()!
                #expect(batches.allSatisfy { $0 <= 4 * record }, "\(batches)")
                #expect(batches.reduce(0, +) == (0..<20).reduce(0) { sum, i in sum + engine.lookupLength("w\(i)") })
                #expect(batches.count >= 5)
            }
        }
    }
}

extension LogEngine {
    /// The record length of `raw`'s live version (0 when absent).
    func lookupLength(_ raw: String) -> Int {
        lookup(raw).map { Int($0.recordLength) } ?? 0
    }
}
