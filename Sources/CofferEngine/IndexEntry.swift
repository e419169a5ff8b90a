import CofferCore

/// Where the live version of a key is and what it is: everything a HEAD or a conditional request needs, so those
/// never touch the disk. About 96 bytes plus the key (see docs/DESIGN.md, "Index memory").
struct IndexEntry: Sendable, Hashable {
    var sequence: UInt64
    var segment: UInt32
    var recordLength: UInt32
    var recordOffset: Int64
    var size: Int64
    var modifiedMillis: Int64
    var md5: Digest128
    var spillID: UInt64
    var spillBlockSize: UInt32
    var spillTableCRC: UInt32
    var contentType: String

    init(sequence: UInt64, segment: UInt32, offset: Int64, length: Int, meta: PutMeta) {
        self.sequence = sequence
        self.segment = segment
        self.recordLength = UInt32(length)
        self.recordOffset = offset
        self.size = meta.size
        self.modifiedMillis = meta.modifiedMillis
        self.md5 = meta.md5
        self.spillID = meta.spillID
        self.spillBlockSize = meta.spillBlockSize
        self.spillTableCRC = meta.spillTableCRC
        self.contentType = meta.contentType
    }

    var isSpilled: Bool { spillID != 0 }

    var info: BlobInfo {
        BlobInfo(size: size, etag: md5.hex, lastModifiedMillis: modifiedMillis, contentType: contentType)
    }

    /// Whether `condition` allows a write over `current` (nil = absent); the error to throw otherwise
    /// (``WriteCondition/refusal(exists:etag:)``, computing the etag only when the condition needs it).
    static func check(_ condition: WriteCondition, current: IndexEntry?) -> StoreError? {
        condition.refusal(exists: current != nil) { current?.md5.hex ?? "" }
    }
}

/// Keeps one copy of each distinct content type, so a million blobs of the same type share one string. Values are
/// compared by their bytes (``BlobKey``): a canonically equivalent spelling is another value, never swapped in.
struct StringInterner: Sendable {
    private var table: [BlobKey: String] = [:]

    mutating func intern(_ value: String) -> String {
        let key = BlobKey(unchecked: value)
        if let existing = table[key] { return existing }
        if table.count < 4096 { table[key] = value }
        return value
    }
}
