import Foundation
import NIOCore
import Testing

@testable import CofferEngine

/// The fixed inputs of the golden files in `Golden/`. Changing any of them (or the encoder) changes the files: the
/// golden tests then fail until the files are regenerated with `COFFER_REGENERATE_GOLDEN=1` and re-verified.
enum GoldenFixtures {
    static let segmentID: UInt32 = 1
    static let segmentCreatedMillis: Int64 = 1_700_000_000_000

    static let inlineKey = "store/golden/inline"
    static let inlineSequence: UInt64 = 0x1122_3344_5566_7788
    static let inlineModifiedMillis: Int64 = 1_700_000_000_123
    static let inlineData = Array("hello, coffer\n".utf8)
    /// MD5 of `inlineData` (computed with `md5sum`).
    static let inlineMD5 = bytes(hex: "5309d7c535a76149a4ba24df49bc5d0b")
    static let inlineContentType = "text/plain; charset=utf-8"

    static let spillKey = "store/golden/spill"
    static let spillSequence: UInt64 = 0x1122_3344_5566_7789
    static let spillModifiedMillis: Int64 = 1_700_000_000_456
    static let spillID: UInt64 = 7
    /// Two blocks: one full 64 KiB block and a 3-byte one.
    static let spillData: [UInt8] = (0..<65_539).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    /// MD5 of `spillData` (computed with Python's hashlib).
    static let spillMD5 = bytes(hex: "ab2ed6469931e10c85600af4443eb1bf")
    /// CRC-32C of block 0 and block 1 of `spillData`, and of the table they form (computed with an independent
    /// bit-by-bit Python implementation).
    static let spillBlockCRCs: [UInt32] = [0x55DD_3DCD, 0x765A_7C83]
    static let spillTableCRC: UInt32 = 0xC82D_90A6
    static let spillContentType = "application/octet-stream"

    static let deleteSequence: UInt64 = 0x1122_3344_5566_778A

    static let segmentHeaderFile = "segment-header.bin"
    static let putInlineFile = "record-put-inline.bin"
    static let putSpillFile = "record-put-spill.bin"
    static let deleteFile = "record-delete.bin"
    static let spillFile = "spill-0000000000000007.blob"

    static var inlineRecord: LogRecord {
        let meta = PutMeta(
            size: Int64(inlineData.count), modifiedMillis: inlineModifiedMillis, md5: Digest128(bytes: inlineMD5),
            contentType: inlineContentType)
        return LogRecord(
            sequence: inlineSequence, kind: .putInline, key: inlineKey, meta: meta, data: ByteBuffer(bytes: inlineData))
    }

    static var spillRecord: LogRecord {
        let meta = PutMeta(
            size: Int64(spillData.count), modifiedMillis: spillModifiedMillis, md5: Digest128(bytes: spillMD5),
            spillID: spillID, spillBlockSize: UInt32(Format.spillBlockSize), spillTableCRC: spillTableCRC,
            contentType: spillContentType)
        return LogRecord(sequence: spillSequence, kind: .putSpill, key: spillKey, meta: meta, data: nil)
    }

    static var deleteRecord: LogRecord {
        LogRecord(sequence: deleteSequence, kind: .delete, key: inlineKey, meta: nil, data: nil)
    }

    static func encode(_ record: LogRecord) -> [UInt8] {
        var buffer = ByteBuffer()
        record.encode(into: &buffer)
        return Array(buffer.readableBytesView)
    }

    static var segmentHeader: [UInt8] {
        Array(SegmentFile.header(id: segmentID, createdMillis: segmentCreatedMillis).readableBytesView)
    }

    /// Writes the spill file with the engine's writer into `directory` and returns its bytes.
    static func makeSpillFile(in directory: String) throws -> [UInt8] {
        let writer = try SpillWriter.create(directory: directory, id: spillID, io: PosixFileIO())
        // Odd chunk sizes, so block boundaries fall inside chunks.
        var offset = 0
        var step = 1
        while offset < spillData.count {
            let end = min(spillData.count, offset + step)
            writer.append(ByteBuffer(bytes: spillData[offset..<end]))
            offset = end
            step = step * 3 + 1
        }
        let tableCRC = try writer.finish()
        #expect(tableCRC == spillTableCRC)
        return try Files.read(writer.finalPath)
    }

    /// The checked-in bytes of `name` (from the test bundle).
    static func golden(_ name: String) throws -> [UInt8] {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Golden"))
        return Array(try Data(contentsOf: url))
    }

    /// `true` when the run should rewrite the golden files in the source tree instead of comparing.
    static var regenerating: Bool {
        ProcessInfo.processInfo.environment["COFFER_REGENERATE_GOLDEN"] == "1"
    }

    /// Writes `bytes` to `Golden/<name>` in the source tree (this file lives in `Support/`, next to `Golden/`).
    static func regenerate(_ name: String, _ bytes: [UInt8]) throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        try Data(bytes).write(to: directory.appendingPathComponent("Golden").appendingPathComponent(name))
    }
}

/// Reads little-endian integers out of a byte array by hand, independently of ByteBuffer and the engine.
struct LittleEndianBytes {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func u8(_ offset: Int) -> UInt8 { bytes[offset] }

    func u16(_ offset: Int) -> UInt16 { UInt16(truncatingIfNeeded: uint(offset, 2)) }

    func u32(_ offset: Int) -> UInt32 { UInt32(truncatingIfNeeded: uint(offset, 4)) }

    func u64(_ offset: Int) -> UInt64 { uint(offset, 8) }

    func slice(_ offset: Int, _ count: Int) -> [UInt8] { Array(bytes[offset..<(offset + count)]) }

    private func uint(_ offset: Int, _ width: Int) -> UInt64 {
        var value: UInt64 = 0
        for i in (0..<width).reversed() { value = value << 8 | UInt64(bytes[offset + i]) }
        return value
    }
}
