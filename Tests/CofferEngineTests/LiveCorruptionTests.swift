import CofferCore
import CofferEngineTesting
import Foundation
import Testing

@testable import CofferEngine

/// Bytes damaged under a running engine are never returned: reads fail with `corrupt` (or `io` for an I/O error).
@Suite("Corruption under a live engine")
struct LiveCorruptionTests {
    @Test("a flipped byte in an inline record: GET and ranged GET fail with corrupt, HEAD still answers")
    func inlineRecord() async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                let value = randomBytes(2000, seed: 1)
                let other = randomBytes(500, seed: 2)
                try await engine.put("victim", value)
                try await engine.put("other", other)
                let entry = try #require(engine.lookup("victim"))
                #expect(try await engine.get("victim") == value)
                // A data byte, then (separately) the trailer: both are caught by the record CRC.
                for offset in [entry.recordOffset + 500, entry.recordOffset + Int64(entry.recordLength) - 1] {
                    try Files.corrupt(directory.segment(entry.segment), at: offset)
                    await #expect(throws: StoreError.corrupt) { try await engine.get("victim") }
                    await #expect(throws: StoreError.corrupt) {
                        try await engine.get("victim", options: ReadOptions(range: .from(first: 0, last: 9)))
                    }
                    let head = try await engine.read(key("victim"), options: ReadOptions(includeBody: false))
                    #expect(head.info.size == 2000 && head.body == nil)
                    #expect(try await engine.get("other") == other)
                    try Files.corrupt(directory.segment(entry.segment), at: offset)  // undo
                    #expect(try await engine.get("victim") == value)
                }
                // A new version is written elsewhere and reads fine.
                try Files.corrupt(directory.segment(entry.segment), at: entry.recordOffset + 100)
                try await engine.put("victim", [1, 2, 3])
                #expect(try await engine.get("victim") == [1, 2, 3])
            }
        }
    }

    @Test("a flipped byte in a spill block: the stream stops before the bad block, earlier blocks are exact")
    func spillBlock() async throws {
        try await withTestDirectory { directory async throws in
            // One 64 KiB block per chunk, so the prefix delivered before the error is well defined.
            let configuration = testConfiguration(directory) { $0.readChunkSize = Format.spillBlockSize }
            try await withEngine(configuration) { engine async throws in
                let value = randomBytes(3 * Format.spillBlockSize + 3392, seed: 3)
                try await engine.put("big", value)
                let entry = try #require(engine.lookup("big"))
                #expect(entry.isSpilled)
                let path = directory.spill(entry.spillID)
                try Files.corrupt(path, at: Int64(Format.spillHeaderSize + 2 * Format.spillBlockSize + 100))

                let full = try await engine.read(key("big"), options: ReadOptions())
                let (prefix, error) = await collectUntilError(full.body)
                #expect((error as? StoreError) == .corrupt)
                #expect(prefix.count == 2 * Format.spillBlockSize)
                #expect(prefix == Array(value[0..<prefix.count]))

                // Ranges that avoid the bad block still read; a range touching it fails.
                let first = ReadOptions(range: .from(first: 10, last: 65_000))
                #expect(try await engine.get("big", options: first) == Array(value[10...65_000]))
                let last = ReadOptions(range: .suffix(3392))
                #expect(try await engine.get("big", options: last) == Array(value[(value.count - 3392)...]))
                let touching = ReadOptions(range: .from(first: Int64(2 * Format.spillBlockSize + 99), last: nil))
                let partial = try await engine.read(key("big"), options: touching)
                let (bytes, rangeError) = await collectUntilError(partial.body)
                #expect(bytes.isEmpty && (rangeError as? StoreError) == .corrupt)
            }
        }
    }

    @Test("a damaged spill header or block table fails the read before any byte is sent")
    func spillHeaderAndTable() async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                let value = randomBytes(10_000, seed: 4)
                for (name, offset) in [("header", 20), ("table", Format.spillHeaderSize + 10_000 + 1)] {
                    try await engine.put(name, value)
                    let entry = try #require(engine.lookup(name))
                    try Files.corrupt(directory.spill(entry.spillID), at: Int64(offset))
                    await #expect(throws: StoreError.corrupt, "\(name)") { try await engine.get(name) }
                }
            }
        }
    }

    @Test("a spill file cut short reads as corrupt")
    func truncatedSpill() async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                let value = randomBytes(100_000, seed: 8)
                try await engine.put("short", value)
                let path = directory.spill(try #require(engine.lookup("short")).spillID)
                try Files.write(path, Array(try Files.read(path).prefix(50_000)))
                await #expect(throws: StoreError.corrupt) { try await engine.get("short") }
            }
        }
    }

    @Test("a missing spill file reads as corrupt, and is reported by recovery")
    func missingSpill() async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                try await engine.put("gone", randomBytes(10_000, seed: 5))
                let entry = try #require(engine.lookup("gone"))
                try FileManager.default.removeItem(atPath: directory.spill(entry.spillID))
                await #expect(throws: StoreError.corrupt) { try await engine.get("gone") }
            }
            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(engine.recovery.missingSpills == 1)
                await #expect(throws: StoreError.corrupt) { try await engine.get("gone") }
                // Overwriting repairs the key.
                try await engine.put("gone", [1])
                #expect(try await engine.get("gone") == [1])
            }
        }
    }

    @Test("an I/O error on read is an io error, not corrupt, and the next read works")
    func readError() async throws {
        try await withTestDirectory { directory async throws in
            let io = FaultInjectingFileIO()
            try await withEngine(testConfiguration(directory, fileIO: io)) { engine async throws in
                let small = randomBytes(100, seed: 6)
                let big = randomBytes(100_000, seed: 7)
                try await engine.put("small", small)
                try await engine.put("big", big)
                io.update { $0.failingReads = 1 }
                await #expect(throws: StoreError.io) { try await engine.get("small") }
                #expect(try await engine.get("small") == small)
                io.update { $0.failingReads = 1 }
                await #expect(throws: StoreError.io) { try await engine.get("big") }
                #expect(try await engine.get("big") == big)
            }
        }
    }
}
