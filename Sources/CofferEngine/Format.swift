/// Every on-disk constant of the engine, in one place. docs/FORMAT.md documents each byte; the golden-file tests in
/// CofferEngineTests pin them. Changing anything here changes the format: bump the version and keep a reader for the
/// old one.
///
/// All integers are little-endian. Every CRC is CRC-32C (Castagnoli), as computed by ``CRC32C``.
public enum Format {
    // MARK: Directory layout

    /// Sub-directory of the data directory holding the log segments.
    public static let segmentsDirectory = "segments"
    /// Sub-directory holding spill files (bodies above the inline threshold).
    public static let blobsDirectory = "blobs"
    /// Sub-directory where recovery keeps a copy of every byte range it cuts.
    public static let recoveryDirectory = "recovery"
    /// The lock file: held with `flock(LOCK_EX)` by the one process that owns the directory.
    public static let lockFileName = "LOCK"
    /// Space kept allocated so deletes and compaction can run on a full disk (not part of the data; may be absent).
    public static let reserveFileName = "reserve"
    /// Segment files are named `<16 lowercase hex digits of the id>` + this suffix.
    public static let segmentSuffix = ".seg"
    /// Spill files are named `<16 lowercase hex digits of the id>` + this suffix.
    public static let spillSuffix = ".blob"
    /// A spill file still being written carries this suffix; recovery removes every one.
    public static let spillPartialSuffix = ".blob.partial"

    // MARK: Segment header (32 bytes at offset 0 of every segment file)

    /// "COFFSEG1"
    public static let segmentMagic: UInt64 = 0x3147_4553_4646_4F43
    public static let segmentVersion: UInt32 = 1
    public static let segmentHeaderSize = 32
    // Offsets inside the segment header.
    static let segmentHeaderMagicOffset = 0  // UInt64
    static let segmentHeaderVersionOffset = 8  // UInt32
    static let segmentHeaderIDOffset = 12  // UInt32
    static let segmentHeaderCreatedOffset = 16  // Int64, ms since epoch
    static let segmentHeaderReservedOffset = 24  // UInt32, zero
    static let segmentHeaderCRCOffset = 28  // UInt32, CRC of bytes 0..<28

    // MARK: Record header (28 bytes at the start of every record)

    /// "CREC"
    public static let recordMagic: UInt32 = 0x4345_5243
    public static let recordHeaderSize = 28
    /// The CRC of the whole record (bytes 0..<length-4) that ends every record.
    public static let recordTrailerSize = 4
    static let recordMagicOffset = 0  // UInt32
    static let recordLengthOffset = 4  // UInt32, whole record including header and trailer
    static let recordSequenceOffset = 8  // UInt64
    static let recordKindOffset = 16  // UInt8, see RecordKind
    static let recordFlagsOffset = 17  // UInt8, zero
    static let recordKeyLengthOffset = 18  // UInt16
    static let recordMetaLengthOffset = 20  // UInt32
    static let recordHeaderCRCOffset = 24  // UInt32, CRC of bytes 0..<24

    /// Largest record the engine writes or accepts while scanning (inline bodies stay far below it).
    public static let maxRecordLength = 64 << 20

    // MARK: Put metadata (the meta section of put records)

    /// Fixed part of the put metadata; the content type's bytes follow.
    public static let putMetaFixedSize = 50
    static let metaSizeOffset = 0  // UInt64, blob length in bytes
    static let metaModifiedOffset = 8  // Int64, ms since epoch
    static let metaMD5Offset = 16  // 16 bytes
    static let metaSpillIDOffset = 32  // UInt64, 0 for inline
    static let metaSpillBlockSizeOffset = 40  // UInt32, 0 for inline
    static let metaSpillTableCRCOffset = 44  // UInt32, 0 for inline
    static let metaContentTypeLengthOffset = 48  // UInt16, then that many bytes
    /// Longest content type stored.
    public static let maxContentTypeLength = 255

    // MARK: Spill file

    /// "COFFBLB1"
    public static let spillMagic: UInt64 = 0x3142_4C42_4646_4F43
    public static let spillHeaderSize = 32
    static let spillHeaderMagicOffset = 0  // UInt64
    static let spillHeaderIDOffset = 8  // UInt64
    static let spillHeaderLengthOffset = 16  // UInt64, data length
    static let spillHeaderBlockSizeOffset = 24  // UInt32
    static let spillHeaderCRCOffset = 28  // UInt32, CRC of bytes 0..<28
    /// Data is checksummed in blocks of this size, so every chunk is verified before it is sent.
    public static let spillBlockSize = 64 * 1024

    /// Byte offset of the block-CRC table in a spill file holding `length` data bytes.
    public static func spillTableOffset(length: Int64) -> Int64 { Int64(spillHeaderSize) + length }
    /// Number of blocks (and table entries) for `length` data bytes.
    public static func spillBlockCount(length: Int64, blockSize: Int) -> Int {
        Int((length + Int64(blockSize) - 1) / Int64(blockSize))
    }
}

/// The kind byte of a record.
public enum RecordKind: UInt8, Sendable {
    /// A blob version whose bytes follow the metadata inside the record.
    case putInline = 1
    /// A blob version whose bytes live in a spill file named by the metadata.
    case putSpill = 2
    /// A tombstone: the key has no blob from this sequence number on.
    case delete = 3
}
