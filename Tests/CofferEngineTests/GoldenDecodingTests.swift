import CofferCore
import Foundation
import NIOCore
import Testing

@testable import CofferEngine

/// The decoders read the golden files back field by field, and an engine opens a data directory assembled from them.
@Suite("Golden files: decoding")
struct GoldenDecodingTests {
    private func decode(_ name: String) throws -> LogRecord {
        let buffer = ByteBuffer(bytes: try GoldenFixtures.golden(name))
        switch LogRecord.decode(buffer, at: buffer.readerIndex) {
        case .success(let record): return record
        case .failure(let failure): throw failure
        }
    }

    @Test("segment header validates for its id only")
    func segmentHeader() throws {
        let header = ByteBuffer(bytes: try GoldenFixtures.golden(GoldenFixtures.segmentHeaderFile))
        #expect(SegmentFile.validHeader(header, id: 1))
        #expect(!SegmentFile.validHeader(header, id: 2))
    }

    @Test("put-inline record decodes to every fixture field")
    func putInline() throws {
        let record = try decode(GoldenFixtures.putInlineFile)
        #expect(record.sequence == 0x1122_3344_5566_7788)
        #expect(record.kind == .putInline)
        #expect(record.key == "store/golden/inline")
        let meta = try #require(record.meta)
        #expect(meta.size == 14)
        #expect(meta.modifiedMillis == 1_700_000_000_123)
        #expect(meta.md5.hex == "5309d7c535a76149a4ba24df49bc5d0b")
        #expect(meta.spillID == 0 && meta.spillBlockSize == 0 && meta.spillTableCRC == 0)
        #expect(meta.contentType == "text/plain; charset=utf-8")
        #expect(record.data.map { Array($0.readableBytesView) } == Array("hello, coffer\n".utf8))
    }

    @Test("put-spill record decodes to every fixture field")
    func putSpill() throws {
        let record = try decode(GoldenFixtures.putSpillFile)
        #expect(record.sequence == 0x1122_3344_5566_7789)
        #expect(record.kind == .putSpill)
        #expect(record.key == "store/golden/spill")
        let meta = try #require(record.meta)
        #expect(meta.size == 65_539)
        #expect(meta.modifiedMillis == 1_700_000_000_456)
        #expect(meta.md5.hex == "ab2ed6469931e10c85600af4443eb1bf")
        #expect(meta.spillID == 7)
        #expect(meta.spillBlockSize == 65_536)
        #expect(meta.spillTableCRC == 0xC82D_90A6)
        #expect(meta.contentType == "application/octet-stream")
        #expect(record.data == nil)
    }

    @Test("tombstone decodes with no metadata and no data")
    func tombstone() throws {
        let record = try decode(GoldenFixtures.deleteFile)
        #expect(record.sequence == 0x1122_3344_5566_778A)
        #expect(record.kind == .delete)
        #expect(record.key == "store/golden/inline")
        #expect(record.meta == nil)
        #expect(record.data == nil)
    }

    @Test("spill file opens against its record and reads back verified")
    func spillFile() async throws {
        try await withTestDirectory { directory async throws in
            // Spill files are named by their id alone.
            try Files.write(
                directory.path + "/0000000000000007.blob", try GoldenFixtures.golden(GoldenFixtures.spillFile))
            let reader = try SpillReader.open(
                directory: directory.path, id: 7, length: 65_539, blockSize: 65_536, tableCRC: 0xC82D_90A6,
                io: PosixFileIO())
            let all = try reader.read(0..<65_539, maxBytes: 1 << 20)
            #expect(Array(all.readableBytesView) == GoldenFixtures.spillData)
            let tail = try reader.read(65_530..<65_539, maxBytes: 1 << 20)
            #expect(Array(tail.readableBytesView) == Array(GoldenFixtures.spillData[65_530...]))
            // The record pins the table: a different table CRC or length is refused.
            #expect(throws: StoreError.corrupt) {
                try SpillReader.open(
                    directory: directory.path, id: 7, length: 65_539, blockSize: 65_536, tableCRC: 0xC82D_90A7,
                    io: PosixFileIO())
            }
            #expect(throws: StoreError.corrupt) {
                try SpillReader.open(
                    directory: directory.path, id: 7, length: 65_538, blockSize: 65_536, tableCRC: 0xC82D_90A6,
                    io: PosixFileIO())
            }
        }
    }

    @Test("an engine opens a data directory built from the golden files")
    func engineReadsGoldenDirectory() async throws {
        try await withTestDirectory { directory async throws in
            for path in [directory.segments, directory.blobs] {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            }
            var segment = try GoldenFixtures.golden(GoldenFixtures.segmentHeaderFile)
            for name in [GoldenFixtures.putInlineFile, GoldenFixtures.putSpillFile, GoldenFixtures.deleteFile] {
                segment += try GoldenFixtures.golden(name)
            }
            try Files.write(directory.segment(1), segment)
            try Files.write(directory.spill(7), try GoldenFixtures.golden(GoldenFixtures.spillFile))

            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(engine.recovery.recordsScanned == 3)
                #expect(engine.recovery.liveBlobs == 1)
                #expect(engine.recovery.bytesCut == 0 && engine.recovery.corruptRegions == 0)
                #expect(engine.recovery.orphansRemoved == 0 && engine.recovery.missingSpills == 0)
                // The tombstone (a higher sequence) deleted the inline blob.
                #expect(try await engine.getIfPresent("store/golden/inline") == nil)
                let read = try await engine.read(key("store/golden/spill"), options: ReadOptions())
                #expect(
                    read.info
                        == BlobInfo(
                            size: 65_539, etag: "ab2ed6469931e10c85600af4443eb1bf",
                            lastModifiedMillis: 1_700_000_000_456, contentType: "application/octet-stream"))
                #expect(try await collect(read.body) == GoldenFixtures.spillData)
                // New writes continue after the highest sequence on disk.
                try await engine.put("after", [1, 2, 3])
                #expect(engine.lookup("after")!.sequence == 0x1122_3344_5566_778B)
            }
        }
    }
}
