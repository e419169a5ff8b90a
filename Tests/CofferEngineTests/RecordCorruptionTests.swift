import NIOCore
import Testing

@testable import CofferEngine

/// Every single-bit flip in an encoded record is caught (by the header CRC or the record CRC), and every truncation
/// reads as truncated, never as a record.
@Suite("Record decoding rejects damage")
struct RecordCorruptionTests {
    static let records: [(name: String, record: LogRecord)] = [
        ("put-inline", GoldenFixtures.inlineRecord),
        ("put-spill", GoldenFixtures.spillRecord),
        ("delete", GoldenFixtures.deleteRecord),
        (
            "put-inline, 300 random bytes",
            LogRecord(
                sequence: 9, kind: .putInline, key: "k/\u{00E9}t\u{00E9}",
                meta: PutMeta(
                    size: 300, modifiedMillis: 1, md5: Digest128(high: 1, low: 2), contentType: "image/png"),
                data: ByteBuffer(bytes: randomBytes(300, seed: 3)))
        ),
    ]

    @Test("every single-bit flip is detected", arguments: 0..<records.count)
    func everyBitFlip(_ index: Int) {
        let encoded = GoldenFixtures.encode(Self.records[index].record)
        var undetected: [Int] = []
        for bit in 0..<(encoded.count * 8) {
            var damaged = encoded
            damaged[bit / 8] ^= 1 << UInt8(bit % 8)
            let buffer = ByteBuffer(bytes: damaged)
            if case .success = LogRecord.decode(buffer, at: 0) { undetected.append(bit) }
            let headerResult = RecordHeader.parse(buffer, at: 0)
            if bit / 8 < Format.recordHeaderSize {
                // A flip in the 28-byte header is caught by the header alone (magic or header CRC).
                #expect(headerResult == .failure(.invalid), "bit \(bit)")
            } else {
                // Past the header, the header still parses; the record CRC catches the flip.
                #expect((try? headerResult.get()) != nil, "bit \(bit)")
            }
        }
        #expect(undetected.isEmpty, "\(Self.records[index].name): undetected flips at bits \(undetected)")
    }

    @Test("truncation at every length reads as truncated", arguments: 0..<records.count)
    func everyTruncation(_ index: Int) {
        let encoded = GoldenFixtures.encode(Self.records[index].record)
        for length in 0..<encoded.count {
            let buffer = ByteBuffer(bytes: encoded[0..<length])
            switch LogRecord.decode(buffer, at: 0) {
            case .success: Issue.record("\(Self.records[index].name): a \(length)-byte prefix decoded as a record")
            case .failure(let failure): #expect(failure == .truncated, "length \(length)")
            }
        }
        let whole = ByteBuffer(bytes: encoded)
        #expect((try? LogRecord.decode(whole, at: 0).get()) != nil)
    }

    @Test("a record decodes at any offset with bytes around it")
    func decodeAtOffset() throws {
        let encoded = GoldenFixtures.encode(GoldenFixtures.inlineRecord)
        var buffer = ByteBuffer(bytes: [0xDE, 0xAD] + encoded + [0xBE, 0xEF])
        let record = try LogRecord.decode(buffer, at: 2).get()
        #expect(record.key == GoldenFixtures.inlineKey)
        #expect(record.data.map { Array($0.readableBytesView) } == GoldenFixtures.inlineData)
        buffer.moveReaderIndex(forwardBy: 2)
        #expect((try? LogRecord.decode(buffer, at: 2).get())?.sequence == GoldenFixtures.inlineSequence)
    }

    /// Builds a header with the given fields and a correct header CRC, followed by `bodyLength` zero bytes.
    private func craftedHeader(
        length: UInt32, kind: UInt8, keyLength: UInt16, metaLength: UInt32, flags: UInt8 = 0
    ) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(Format.recordMagic, endianness: .little)
        buffer.writeInteger(length, endianness: .little)
        buffer.writeInteger(UInt64(1), endianness: .little)
        buffer.writeInteger(kind)
        buffer.writeInteger(flags)
        buffer.writeInteger(keyLength, endianness: .little)
        buffer.writeInteger(metaLength, endianness: .little)
        buffer.writeInteger(CRC32C.checksum(buffer), endianness: .little)
        return buffer
    }

    @Test("headers with a valid CRC but impossible fields are refused")
    func semanticHeaderChecks() {
        let invalid: [(String, ByteBuffer)] = [
            ("kind 0", craftedHeader(length: 100, kind: 0, keyLength: 1, metaLength: 50)),
            ("kind 4", craftedHeader(length: 100, kind: 4, keyLength: 1, metaLength: 50)),
            ("empty key", craftedHeader(length: 100, kind: 1, keyLength: 0, metaLength: 50)),
            ("length below its parts", craftedHeader(length: 60, kind: 1, keyLength: 1, metaLength: 50)),
            ("put meta below 50", craftedHeader(length: 100, kind: 1, keyLength: 1, metaLength: 49)),
            ("tombstone with meta", craftedHeader(length: 100, kind: 3, keyLength: 1, metaLength: 50)),
            ("tombstone with data", craftedHeader(length: 40, kind: 3, keyLength: 1, metaLength: 0)),
            ("spill record with data", craftedHeader(length: 100, kind: 2, keyLength: 1, metaLength: 50)),
            ("over the maximum length", craftedHeader(length: 64 << 20 + 1, kind: 1, keyLength: 1, metaLength: 50)),
        ]
        for (name, buffer) in invalid {
            #expect(RecordHeader.parse(buffer, at: 0) == .failure(.invalid), "\(name)")
        }
        // Sanity: the same builder makes acceptable headers.
        let tombstone = craftedHeader(length: 33, kind: 3, keyLength: 1, metaLength: 0)
        #expect((try? RecordHeader.parse(tombstone, at: 0).get())?.dataLength == 0)
        let inline = craftedHeader(length: 100, kind: 1, keyLength: 1, metaLength: 50)
        #expect((try? RecordHeader.parse(inline, at: 0).get())?.dataLength == 17)
    }

    @Test("put metadata must agree with the record around it")
    func metadataChecks() {
        // An inline record whose metadata size disagrees with its data length: every CRC right, still refused.
        var meta = PutMeta(size: 5, modifiedMillis: 0, md5: Digest128(high: 0, low: 0), contentType: "a/b")
        let wrongSize = LogRecord(
            sequence: 1, kind: .putInline, key: "k", meta: meta, data: ByteBuffer(bytes: [1, 2, 3]))
        #expect(LogRecord.decode(ByteBuffer(bytes: GoldenFixtures.encode(wrongSize)), at: 0) == .failure(.invalid))
        // A spill record without a spill id.
        meta.size = 100
        let noSpill = LogRecord(sequence: 1, kind: .putSpill, key: "k", meta: meta, data: nil)
        #expect(LogRecord.decode(ByteBuffer(bytes: GoldenFixtures.encode(noSpill)), at: 0) == .failure(.invalid))
        // An inline record that names a spill file.
        meta.size = 3
        meta.spillID = 4
        let inlineWithSpill = LogRecord(
            sequence: 1, kind: .putInline, key: "k", meta: meta, data: ByteBuffer(bytes: [1, 2, 3]))
        #expect(
            LogRecord.decode(ByteBuffer(bytes: GoldenFixtures.encode(inlineWithSpill)), at: 0) == .failure(.invalid))
    }
}

extension Result where Success == LogRecord, Failure == LogRecord.DecodeFailure {
    /// Compares failures only (a `LogRecord` is not `Equatable`); a success never equals anything.
    static func == (lhs: Self, rhs: Self) -> Bool {
        switch (lhs, rhs) {
        case (.failure(let a), .failure(let b)): return a == b
        default: return false
        }
    }
}
