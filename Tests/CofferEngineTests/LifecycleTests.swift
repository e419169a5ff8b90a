import CofferCore
import Foundation
import Testing

@testable import CofferEngine

/// Opening, closing and owning a data directory.
@Suite("Engine lifecycle")
struct LifecycleTests {
    @Test("a closed engine refuses writes, reads and deletes with unavailable; close is idempotent")
    func closedEngine() async throws {
        try await withTestDirectory { directory async throws in
            let engine = try await openEngine(testConfiguration(directory))
            try await engine.put("k", [1])
            try await engine.close()
            await #expect(throws: StoreError.unavailable) { try await engine.put("k", [2]) }
            await #expect(throws: StoreError.unavailable) { try await engine.put("big", randomBytes(10_000, seed: 1)) }
            await #expect(throws: StoreError.unavailable) { try await engine.get("k") }
            await #expect(throws: StoreError.unavailable) { try await engine.remove("k") }
            try await engine.close()
            // Nothing from the refused calls reached the disk.
            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(try await engine.get("k") == [1])
                #expect(engine.recovery.recordsScanned == 1)
            }
        }
    }

    @Test("a second open of the same directory fails while the first holds it, and works after close")
    func exclusiveLock() async throws {
        try await withTestDirectory { directory async throws in
            let first = try await openEngine(testConfiguration(directory))
            await #expect(throws: StoreError.unavailable) { try await openEngine(testConfiguration(directory)) }
            // The failed open changed nothing for the owner.
            try await first.put("k", [1])
            #expect(try await first.get("k") == [1])
            try await first.close()
            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(try await engine.get("k") == [1])
            }
        }
    }

    @Test("close commits the writes already queued; later writes are refused")
    func closeDrainsQueue() async throws {
        try await withTestDirectory { directory async throws in
            let gate = GateFileIO()
            let engine = try await openEngine(testConfiguration(directory, fileIO: gate))
            gate.holdNextSegmentSync()
            let held = Task { try await engine.put("held", [1]) }
            await gate.waitUntilHeld()
            let (ended, endedContinuation) = AsyncStream.makeStream(of: Void.self)
            let queued = (0..<5).map { i in
                Task { () -> Bool in
                    let body = ChunkedBody([UInt8(i)], onEnd: { endedContinuation.yield() })
                    do {
                        _ = try await engine.write(key("q\(i)"), body: body, options: WriteOptions())
                        return true
                    } catch let error as StoreError {
                        // Only a write that reached the queue after close began may be refused.
                        #expect(error == .unavailable)
                        return false
                    }
                }
            }
            var count = 0
            for await _ in ended {
                count += 1
                if count == queued.count { break }
            }
            let closing = Task { try await engine.close() }
            gate.release()
            try await closing.value
            _ = try await held.value
            var committed: [Bool] = []
            for task in queued { committed.append(try await task.value) }
            #expect(committed.filter { $0 }.count >= 1)
            await #expect(throws: StoreError.unavailable) { try await engine.put("late", [9]) }

            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(try await engine.get("held") == [1])
                for i in 0..<5 {
                    #expect(try await engine.getIfPresent("q\(i)") == (committed[i] ? [UInt8(i)] : nil), "q\(i)")
                }
                #expect(try await engine.getIfPresent("late") == nil)
            }
        }
    }

    @Test("open creates the directory tree and a first segment; a file in the way is an error")
    func layout() async throws {
        try await withTestDirectory { directory async throws in
            let nested = TestDirectory(path: directory.path + "/a/b/data")
            try await withEngine(testConfiguration(nested)) { engine async throws in
                #expect(engine.recovery.segmentsScanned == 0)
                #expect(engine.count == 0)
            }
            #expect(Files.list(nested.path) == ["LOCK", "blobs", "recovery", "reserve", "segments"])
            #expect(Files.list(nested.segments) == ["0000000000000001.seg"])
            #expect(try Files.read(nested.segment(1)).count == Format.segmentHeaderSize)

            try Files.write(directory.path + "/file", [1])
            let blocked = TestDirectory(path: directory.path + "/file/data")
            await #expect(throws: (any Error).self) { try await openEngine(testConfiguration(blocked)) }
        }
    }

    @Test("open refuses an inline threshold whose records would exceed the record limit, and bad thresholds")
    func invalidConfigurationIsRefused() async throws {
        try await withTestDirectory { directory in
            await #expect(throws: ConfigurationError.self) {
                try await openEngine(testConfiguration(directory) { $0.inlineThreshold = Format.maxRecordLength })
            }
            await #expect(throws: ConfigurationError.self) {
                try await openEngine(testConfiguration(directory) { $0.compactionThreshold = 1.5 })
            }
            // Nothing was created by the refused opens.
            #expect(Files.list(directory.path).isEmpty)
        }
    }
}
