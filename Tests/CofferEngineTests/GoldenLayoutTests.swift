import CCRC32C
import Testing

@testable import CofferEngine

/// Checks the checked-in golden files against the layout documented in docs/FORMAT.md, field by field, with literal
/// expected values and the portable table CRC: these tests do not call the encoders, so the golden tests are not
/// "encoder == encoder". (The files were also rebuilt byte-for-byte by an independent Python script when they were
/// made.)
@Suite("Golden files: layout")
struct GoldenLayoutTests {
    private func crc(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { coffer_crc32c_portable(0, $0.baseAddress, $0.count) }
    }

    @Test("segment header: magic, version, id, created, reserved, CRC")
    func segmentHeader() throws {
        let file = LittleEndianBytes(try GoldenFixtures.golden(GoldenFixtures.segmentHeaderFile))
        #expect(file.bytes.count == 32)
        #expect(file.slice(0, 8) == Array("COFFSEG1".utf8))
        #expect(file.u32(8) == 1)
        #expect(file.u32(12) == 1)
        #expect(file.slice(16, 8) == [0x00, 0x68, 0xE5, 0xCF, 0x8B, 0x01, 0x00, 0x00])  // 1_700_000_000_000 LE
        #expect(file.u64(16) == 1_700_000_000_000)
        #expect(file.u32(24) == 0)
        #expect(file.u32(28) == crc(file.slice(0, 28)))
        #expect(file.u32(28) == 0xD577_0D51)
    }

    /// Checks the 28-byte record header, the key and the trailer.
    private func checkFrame(
        _ file: LittleEndianBytes, sequence: [UInt8], kind: UInt8, key: String, metaLength: UInt32
    ) {
        #expect(file.slice(0, 4) == Array("CREC".utf8))
        #expect(file.u32(4) == UInt32(file.bytes.count))
        #expect(file.slice(8, 8) == sequence)
        #expect(file.u8(16) == kind)
        #expect(file.u8(17) == 0)
        #expect(file.u16(18) == UInt16(key.utf8.count))
        #expect(file.u32(20) == metaLength)
        #expect(file.u32(24) == crc(file.slice(0, 24)))
        #expect(file.slice(28, key.utf8.count) == Array(key.utf8))
        let end = file.bytes.count
        #expect(file.u32(end - 4) == crc(file.slice(0, end - 4)))
    }

    @Test("put-inline record: header, key, put metadata, data, trailer")
    func putInline() throws {
        let file = LittleEndianBytes(try GoldenFixtures.golden(GoldenFixtures.putInlineFile))
        let contentType = Array("text/plain; charset=utf-8".utf8)
        #expect(file.bytes.count == 28 + 19 + 50 + contentType.count + 14 + 4)
        checkFrame(
            file, sequence: [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11], kind: 1, key: "store/golden/inline",
            metaLength: UInt32(50 + contentType.count))
        let meta = 28 + 19
        #expect(file.u64(meta + 0) == 14)
        #expect(file.u64(meta + 8) == 1_700_000_000_123)
        // The MD5 is stored as its 16 bytes in order.
        #expect(hex(file.slice(meta + 16, 16)) == "5309d7c535a76149a4ba24df49bc5d0b")
        #expect(file.u64(meta + 32) == 0)
        #expect(file.u32(meta + 40) == 0)
        #expect(file.u32(meta + 44) == 0)
        #expect(file.u16(meta + 48) == UInt16(contentType.count))
        #expect(file.slice(meta + 50, contentType.count) == contentType)
        #expect(file.slice(meta + 50 + contentType.count, 14) == Array("hello, coffer\n".utf8))
    }

    @Test("put-spill record: metadata names the spill file and pins its table")
    func putSpill() throws {
        let file = LittleEndianBytes(try GoldenFixtures.golden(GoldenFixtures.putSpillFile))
        let contentType = Array("application/octet-stream".utf8)
        #expect(file.bytes.count == 28 + 18 + 50 + contentType.count + 4)
        checkFrame(
            file, sequence: [0x89, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11], kind: 2, key: "store/golden/spill",
            metaLength: UInt32(50 + contentType.count))
        let meta = 28 + 18
        #expect(file.u64(meta + 0) == 65_539)
        #expect(file.u64(meta + 8) == 1_700_000_000_456)
        #expect(hex(file.slice(meta + 16, 16)) == "ab2ed6469931e10c85600af4443eb1bf")
        #expect(file.u64(meta + 32) == 7)
        #expect(file.u32(meta + 40) == 65_536)
        #expect(file.u32(meta + 44) == 0xC82D_90A6)
        #expect(file.u16(meta + 48) == UInt16(contentType.count))
        #expect(file.slice(meta + 50, contentType.count) == contentType)
    }

    @Test("tombstone: header, key, trailer, no metadata, no data")
    func tombstone() throws {
        let file = LittleEndianBytes(try GoldenFixtures.golden(GoldenFixtures.deleteFile))
        #expect(file.bytes.count == 28 + 19 + 4)
        checkFrame(
            file, sequence: [0x8A, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11], kind: 3, key: "store/golden/inline",
            metaLength: 0)
    }

    @Test("spill file: header, data at 32, block-CRC table, table CRC")
    func spillFile() throws {
        let file = LittleEndianBytes(try GoldenFixtures.golden(GoldenFixtures.spillFile))
        let length = 65_539
        #expect(file.bytes.count == 32 + length + 2 * 4 + 4)
        #expect(file.slice(0, 8) == Array("COFFBLB1".utf8))
        #expect(file.u64(8) == 7)
        #expect(file.u64(16) == UInt64(length))
        #expect(file.u32(24) == 65_536)
        #expect(file.u32(28) == crc(file.slice(0, 28)))
        let data = file.slice(32, length)
        #expect(data == GoldenFixtures.spillData)
        let table = 32 + length
        #expect(file.u32(table) == crc(Array(data[0..<65_536])))
        #expect(file.u32(table + 4) == crc(Array(data[65_536...])))
        #expect([file.u32(table), file.u32(table + 4)] == GoldenFixtures.spillBlockCRCs)
        #expect(file.u32(table + 8) == crc(file.slice(table, 8)))
        #expect(file.u32(table + 8) == 0xC82D_90A6)
    }

    @Test("Format constants match the documented numbers")
    func constants() {
        #expect(Format.segmentHeaderSize == 32)
        #expect(Format.recordHeaderSize == 28)
        #expect(Format.recordTrailerSize == 4)
        #expect(Format.putMetaFixedSize == 50)
        #expect(Format.spillHeaderSize == 32)
        #expect(Format.spillBlockSize == 65_536)
        #expect(Format.maxRecordLength == 64 << 20)
        #expect(Format.maxContentTypeLength == 255)
        #expect(Format.spillTableOffset(length: 10) == 42)
        #expect(Format.spillBlockCount(length: 0, blockSize: 65_536) == 0)
        #expect(Format.spillBlockCount(length: 65_536, blockSize: 65_536) == 1)
        #expect(Format.spillBlockCount(length: 65_537, blockSize: 65_536) == 2)
        #expect(RecordKind.putInline.rawValue == 1 && RecordKind.putSpill.rawValue == 2)
        #expect(RecordKind.delete.rawValue == 3)
    }
}
