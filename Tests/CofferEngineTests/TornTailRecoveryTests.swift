import CofferCore
import Foundation
import NIOCore
import Testing

@testable import CofferEngine

/// A torn tail of the last segment is cut at the last good record, a copy of exactly the cut bytes goes to
/// `recovery/`, and every earlier blob survives byte-exact.
@Suite("Recovery: torn tail of the last segment")
struct TornTailRecoveryTests {
    /// Blobs written before the last one: empty, tiny, inline and spilled.
    static let earlier: [(key: String, bytes: [UInt8])] = [
        ("a/empty", []),
        ("a/one", [42]),
        ("a/inline", randomBytes(1000, seed: 1)),
        ("a/threshold", randomBytes(testInlineThreshold, seed: 2)),
        ("a/spilled", randomBytes(3 * testInlineThreshold + 5, seed: 3)),
    ]

    struct Layout {
        var segment: [UInt8]
        var recordStart: Int
        var recordEnd: Int
    }

    /// Writes the earlier blobs and `last`, closes, and returns the segment's bytes and where the last record is.
    private func prepare(_ directory: TestDirectory, last: [UInt8]) async throws -> Layout {
        try await withEngine(testConfiguration(directory)) { engine async throws in
            for blob in Self.earlier { try await engine.put(blob.key, blob.bytes) }
            try await engine.put("z/last", last)
            let entry = try #require(engine.lookup("z/last"))
            #expect(entry.segment == 1)
            let start = Int(entry.recordOffset)
            return Layout(
                segment: try Files.read(directory.segment(1)), recordStart: start,
                recordEnd: start + Int(entry.recordLength))
        }
    }

    /// Reopens on a segment holding `contents` and checks the outcome.
    private func reopen(
        _ directory: TestDirectory, contents: [UInt8], lastPresent: [UInt8]?, keptSize: Int, cut: [UInt8],
        context: String
    ) async throws {
        try Files.write(directory.segment(1), contents)
        try Files.empty(directory.recovery)
        try await withEngine(testConfiguration(directory)) { engine async throws in
            for blob in Self.earlier {
                #expect(try await engine.get(blob.key) == blob.bytes, "\(context): \(blob.key)")
            }
            #expect(try await engine.getIfPresent("z/last") == lastPresent, "\(context)")
            #expect(try await engine.getIfPresent("phantom") == nil, "\(context)")
            #expect(engine.recovery.bytesCut == Int64(cut.count), "\(context)")
            #expect(engine.recovery.corruptRegions == 0, "\(context)")
            #expect(engine.recovery.liveBlobs == Self.earlier.count + (lastPresent == nil ? 0 : 1), "\(context)")
        }
        #expect(try Files.size(directory.segment(1)) == Int64(keptSize), "\(context)")
        let copies = Files.list(directory.recovery)
        if cut.isEmpty {
            #expect(copies.isEmpty, "\(context)")
        } else {
            #expect(copies.count == 1, "\(context)")
            if let name = copies.first {
                #expect(name.hasPrefix("0000000000000001-\(keptSize)-") && name.hasSuffix(".cut"), "\(context)")
                #expect(try Files.read(directory.recovery + "/" + name) == cut, "\(context)")
            }
        }
    }

    /// Cuts the file at every offset from the start to the end of the last record.
    private func truncateEverywhere(last: [UInt8]) async throws {
        try await withTestDirectory { directory async throws in
            let layout = try await prepare(directory, last: last)
            #expect(layout.segment.count == layout.recordEnd)
            for end in layout.recordStart...layout.recordEnd {
                let complete = end == layout.recordEnd
                try await reopen(
                    directory, contents: Array(layout.segment[..<end]), lastPresent: complete ? last : nil,
                    keptSize: complete ? end : layout.recordStart,
                    cut: complete ? [] : Array(layout.segment[layout.recordStart..<end]),
                    context: "cut at \(end)")
            }
        }
    }

    @Test("truncation at every byte offset inside the last record")
    func truncationAtEveryOffset() async throws {
        try await truncateEverywhere(last: randomBytes(120, seed: 4))
    }

    @Test("a torn last record whose data holds a complete valid record is still cut, never indexed")
    func truncationWithEmbeddedRecord() async throws {
        // A blob that is itself a log record (think: a backup of a segment stored in the store). When its record is
        // torn, the record inside its data must not be mistaken for a real one.
        let phantom = LogRecord(
            sequence: 1 << 40, kind: .putInline, key: "phantom",
            meta: PutMeta(size: 3, modifiedMillis: 0, md5: Digest128(high: 0, low: 0), contentType: "x/y"),
            data: ByteBuffer(bytes: [7, 7, 7]))
        try await truncateEverywhere(last: [1, 2, 3] + GoldenFixtures.encode(phantom) + [4, 5, 6])
    }

    @Test("garbage or zeros after the last record are cut, the record stays")
    func trailingGarbage() async throws {
        try await withTestDirectory { directory async throws in
            let last = randomBytes(50, seed: 5)
            let layout = try await prepare(directory, last: last)
            let tails: [(String, [UInt8])] = [
                ("random garbage", randomBytes(1000, seed: 6)),
                ("zeros", [UInt8](repeating: 0, count: 4096)),
                ("one byte", [0x43]),
                ("a lone magic", Array("CREC".utf8)),
                ("a header prefix", Array(layout.segment[layout.recordStart..<(layout.recordStart + 20)])),
            ]
            for (name, tail) in tails {
                try await reopen(
                    directory, contents: layout.segment + tail, lastPresent: last, keptSize: layout.recordEnd,
                    cut: tail, context: name)
            }
        }
    }

    @Test("after a cut, new writes append at the record boundary and survive a restart")
    func writesAfterCut() async throws {
        try await withTestDirectory { directory async throws in
            let layout = try await prepare(directory, last: randomBytes(64, seed: 7))
            try Files.write(directory.segment(1), Array(layout.segment[..<(layout.recordEnd - 10)]))
            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(engine.recovery.bytesCut == Int64(layout.recordEnd - 10 - layout.recordStart))
                try await engine.put("z/new", [9, 9, 9])
                #expect(engine.lookup("z/new")!.recordOffset == Int64(layout.recordStart))
            }
            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(engine.recovery.bytesCut == 0)
                #expect(try await engine.get("z/new") == [9, 9, 9])
                #expect(try await engine.getIfPresent("z/last") == nil)
                for blob in Self.earlier { #expect(try await engine.get(blob.key) == blob.bytes) }
            }
        }
    }

    @Test("a torn spilled last record: the record is cut and its spill file removed as an orphan")
    func tornSpillRecord() async throws {
        try await withTestDirectory { directory async throws in
            let big = randomBytes(2 * testInlineThreshold, seed: 8)
            let layout = try await prepare(directory, last: big)
            let spills = Files.list(directory.blobs)
            #expect(spills.count == 2)
            try Files.write(directory.segment(1), Array(layout.segment[..<(layout.recordEnd - 1)]))
            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(try await engine.getIfPresent("z/last") == nil)
                #expect(engine.recovery.orphansRemoved == 1)
                #expect(try await engine.get("a/spilled") == Self.earlier[4].bytes)
            }
            #expect(Files.list(directory.blobs).count == 1)
        }
    }

    @Test("a last segment without a valid header is moved to recovery and replaced")
    func tornSegmentHeader() async throws {
        try await withTestDirectory { directory async throws in
            let last = randomBytes(10, seed: 9)
            _ = try await prepare(directory, last: last)
            let torn = Array(GoldenFixtures.segmentHeader[0..<10])
            try Files.write(directory.segment(2), torn)
            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(engine.recovery.bytesCut == 10)
                #expect(try await engine.get("z/last") == last)
                try await engine.put("z/after", [1])
            }
            let copies = Files.list(directory.recovery)
            #expect(copies.count == 1)
            #expect(try copies.first.map { try Files.read(directory.recovery + "/" + $0) } == torn)
            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(try await engine.get("z/after") == [1])
                #expect(try await engine.get("z/last") == last)
            }
        }
    }
}
