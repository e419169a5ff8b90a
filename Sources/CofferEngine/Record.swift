import NIOCore

/// The metadata of a put record (see ``Format`` and docs/FORMAT.md, "Put metadata").
public struct PutMeta: Hashable, Sendable {
    public var size: Int64
    public var modifiedMillis: Int64
    public var md5: Digest128
    /// 0 when the bytes are inline.
    public var spillID: UInt64
    public var spillBlockSize: UInt32
    /// CRC of the spill file's block-CRC table (pins the table to this record).
    public var spillTableCRC: UInt32
    public var contentType: String

    public init(
        size: Int64,
        modifiedMillis: Int64,
        md5: Digest128,
        spillID: UInt64 = 0,
        spillBlockSize: UInt32 = 0,
        spillTableCRC: UInt32 = 0,
        contentType: String
    ) {
        self.size = size
        self.modifiedMillis = modifiedMillis
        self.md5 = md5
        self.spillID = spillID
        self.spillBlockSize = spillBlockSize
        self.spillTableCRC = spillTableCRC
        self.contentType = contentType
    }

    var encodedSize: Int { Format.putMetaFixedSize + contentType.utf8.count }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt64(bitPattern: size), endianness: .little)
        buffer.writeInteger(modifiedMillis, endianness: .little)
        buffer.writeInteger(md5.high, endianness: .big)
        buffer.writeInteger(md5.low, endianness: .big)
        buffer.writeInteger(spillID, endianness: .little)
        buffer.writeInteger(spillBlockSize, endianness: .little)
        buffer.writeInteger(spillTableCRC, endianness: .little)
        buffer.writeInteger(UInt16(contentType.utf8.count), endianness: .little)
        buffer.writeString(contentType)
    }

    /// Parses metadata from `length` bytes at absolute `index`; `nil` if malformed.
    static func parse(_ buffer: ByteBuffer, at index: Int, length: Int) -> PutMeta? {
        guard length >= Format.putMetaFixedSize,
            let size = buffer.getInteger(at: index + Format.metaSizeOffset, endianness: .little, as: UInt64.self),
            let modified = buffer.getInteger(
                at: index + Format.metaModifiedOffset, endianness: .little, as: Int64.self),
            let high = buffer.getInteger(at: index + Format.metaMD5Offset, endianness: .big, as: UInt64.self),
            let low = buffer.getInteger(at: index + Format.metaMD5Offset + 8, endianness: .big, as: UInt64.self),
            let spillID = buffer.getInteger(at: index + Format.metaSpillIDOffset, endianness: .little, as: UInt64.self),
            let blockSize = buffer.getInteger(
                at: index + Format.metaSpillBlockSizeOffset, endianness: .little, as: UInt32.self),
            let tableCRC = buffer.getInteger(
                at: index + Format.metaSpillTableCRCOffset, endianness: .little, as: UInt32.self),
            let typeLength = buffer.getInteger(
                at: index + Format.metaContentTypeLengthOffset, endianness: .little, as: UInt16.self),
            Format.putMetaFixedSize + Int(typeLength) == length,
            size <= UInt64(Int64.max),
            let contentType = buffer.getString(at: index + Format.putMetaFixedSize, length: Int(typeLength))
        else { return nil }
        return PutMeta(
            size: Int64(size), modifiedMillis: modified, md5: Digest128(high: high, low: low), spillID: spillID,
            spillBlockSize: blockSize, spillTableCRC: tableCRC, contentType: contentType)
    }
}

/// The fixed header of a record, validated by its own CRC, so a scan can trust lengths without reading the body.
public struct RecordHeader: Hashable, Sendable {
    public var length: Int
    public var sequence: UInt64
    public var kind: RecordKind
    public var keyLength: Int
    public var metaLength: Int

    /// Bytes of inline data the record carries.
    public var dataLength: Int {
        length - Format.recordHeaderSize - keyLength - metaLength - Format.recordTrailerSize
    }

    /// Why a header was refused.
    public enum ParseFailure: Error, Hashable, Sendable {
        /// Fewer than ``Format/recordHeaderSize`` bytes are available.
        case truncated
        /// Magic, header CRC, kind or lengths are wrong.
        case invalid
    }

    /// Parses and validates the header at absolute `index` of `buffer`.
    public static func parse(_ buffer: ByteBuffer, at index: Int) -> Result<RecordHeader, ParseFailure> {
        guard index + Format.recordHeaderSize <= buffer.writerIndex else { return .failure(.truncated) }
        guard
            buffer.getInteger(at: index + Format.recordMagicOffset, endianness: .little, as: UInt32.self)
                == Format.recordMagic,
            let storedCRC = buffer.getInteger(
                at: index + Format.recordHeaderCRCOffset, endianness: .little, as: UInt32.self),
            CRC32C.checksum(buffer, at: index, length: Format.recordHeaderCRCOffset) == storedCRC,
            let length = buffer.getInteger(at: index + Format.recordLengthOffset, endianness: .little, as: UInt32.self),
            let sequence = buffer.getInteger(
                at: index + Format.recordSequenceOffset, endianness: .little, as: UInt64.self),
            let kindByte = buffer.getInteger(at: index + Format.recordKindOffset, as: UInt8.self),
            let kind = RecordKind(rawValue: kindByte),
            let keyLength = buffer.getInteger(
                at: index + Format.recordKeyLengthOffset, endianness: .little, as: UInt16.self),
            let metaLength = buffer.getInteger(
                at: index + Format.recordMetaLengthOffset, endianness: .little, as: UInt32.self)
        else { return .failure(.invalid) }
        let header = RecordHeader(
            length: Int(length), sequence: sequence, kind: kind, keyLength: Int(keyLength),
            metaLength: Int(metaLength))
        guard header.length <= Format.maxRecordLength, keyLength > 0, header.dataLength >= 0,
            kind == .putInline || header.dataLength == 0,
            kind == .delete ? metaLength == 0 : Int(metaLength) >= Format.putMetaFixedSize
        else { return .failure(.invalid) }
        return .success(header)
    }
}

/// One decoded log record.
public struct LogRecord: Sendable {
    public var sequence: UInt64
    public var kind: RecordKind
    public var key: String
    /// `nil` for a tombstone.
    public var meta: PutMeta?
    /// The inline bytes of a ``RecordKind/putInline`` record.
    public var data: ByteBuffer?

    public init(sequence: UInt64, kind: RecordKind, key: String, meta: PutMeta?, data: ByteBuffer?) {
        self.sequence = sequence
        self.kind = kind
        self.key = key
        self.meta = meta
        self.data = data
    }

    /// The encoded length of this record.
    public var encodedLength: Int {
        Format.recordHeaderSize + key.utf8.count + (meta?.encodedSize ?? 0) + (data?.readableBytes ?? 0)
            + Format.recordTrailerSize
    }

    /// Appends the encoded record to `buffer` and returns its length.
    @discardableResult
    public func encode(into buffer: inout ByteBuffer) -> Int {
        let start = buffer.writerIndex
        let length = encodedLength
        buffer.reserveCapacity(minimumWritableBytes: length)
        buffer.writeInteger(Format.recordMagic, endianness: .little)
        buffer.writeInteger(UInt32(length), endianness: .little)
        buffer.writeInteger(sequence, endianness: .little)
        buffer.writeInteger(kind.rawValue)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt16(key.utf8.count), endianness: .little)
        buffer.writeInteger(UInt32(meta?.encodedSize ?? 0), endianness: .little)
        let headerCRC = CRC32C.checksum(buffer, at: start, length: Format.recordHeaderCRCOffset)
        buffer.writeInteger(headerCRC, endianness: .little)
        buffer.writeString(key)
        meta?.write(to: &buffer)
        if let data { buffer.writeImmutableBuffer(data) }
        let crc = CRC32C.checksum(buffer, at: start, length: length - Format.recordTrailerSize)
        buffer.writeInteger(crc, endianness: .little)
        assert(buffer.writerIndex - start == length)
        return length
    }

    /// Why a record was refused.
    public enum DecodeFailure: Error, Hashable, Sendable {
        /// The buffer ends inside the record.
        case truncated
        /// The header, the metadata or the record CRC is wrong.
        case invalid
    }

    /// Decodes and fully verifies (header CRC and record CRC) the record at absolute `index`.
    public static func decode(_ buffer: ByteBuffer, at index: Int) -> Result<LogRecord, DecodeFailure> {
        let header: RecordHeader
        switch RecordHeader.parse(buffer, at: index) {
        case .success(let parsed): header = parsed
        case .failure(.truncated): return .failure(.truncated)
        case .failure(.invalid): return .failure(.invalid)
        }
        guard index + header.length <= buffer.writerIndex else { return .failure(.truncated) }
        return decode(buffer, at: index, header: header)
    }

    /// Decodes the record at `index` whose header was already parsed, verifying the record CRC.
    public static func decode(
        _ buffer: ByteBuffer, at index: Int, header: RecordHeader
    ) -> Result<
        LogRecord, DecodeFailure
    > {
        let crcOffset = index + header.length - Format.recordTrailerSize
        guard let stored = buffer.getInteger(at: crcOffset, endianness: .little, as: UInt32.self),
            CRC32C.checksum(buffer, at: index, length: header.length - Format.recordTrailerSize) == stored
        else { return .failure(.invalid) }
        let keyStart = index + Format.recordHeaderSize
        guard let keyBytes = buffer.getBytes(at: keyStart, length: header.keyLength),
            let key = String(validating: keyBytes, as: UTF8.self)
        else { return .failure(.invalid) }
        var meta: PutMeta?
        var data: ByteBuffer?
        if header.kind != .delete {
            guard let parsed = PutMeta.parse(buffer, at: keyStart + header.keyLength, length: header.metaLength)
            else { return .failure(.invalid) }
            meta = parsed
            if header.kind == .putInline {
                guard parsed.size == Int64(header.dataLength), parsed.spillID == 0 else { return .failure(.invalid) }
                data = buffer.getSlice(at: keyStart + header.keyLength + header.metaLength, length: header.dataLength)
            } else {
                guard parsed.spillID != 0, parsed.spillBlockSize > 0 else { return .failure(.invalid) }
            }
        }
        return .success(
            LogRecord(sequence: header.sequence, kind: header.kind, key: key, meta: meta, data: data))
    }
}
