import NIOCore

/// Reads a segment front to back through an 8 MiB window, so recovery makes a few large reads instead of one per
/// record. Blocking.
struct SegmentScanner {
    let io: any FileIO
    let fd: CInt
    let size: Int64
    private var window = ByteBuffer()
    private var windowStart: Int64 = 0
    private static let windowSize = 8 << 20

    init(io: any FileIO, fd: CInt, size: Int64) {
        self.io = io
        self.fd = fd
        self.size = size
    }

    enum Outcome {
        /// A record that passed every check, and its length.
        case valid(LogRecord, Int)
        /// Too short, or a check failed.
        case invalid
    }

    /// Makes `offset..<offset+count` available in the window; `false` if it runs past the end of the file.
    private mutating func ensure(_ offset: Int64, _ count: Int) throws -> Bool {
        guard offset >= 0, offset + Int64(count) <= size else { return false }
        if offset >= windowStart && offset + Int64(count) <= windowStart + Int64(window.readableBytes) { return true }
        let want = Int(min(max(Int64(count), Int64(Self.windowSize)), size - offset))
        window = try io.read(fd, count: want, offset: offset)
        windowStart = offset
        return window.readableBytes >= count
    }

    /// `count` bytes at `offset`, or `nil` past the end.
    mutating func bytes(at offset: Int64, count: Int) throws -> ByteBuffer? {
        guard try ensure(offset, count) else { return nil }
        return window.getSlice(at: window.readerIndex + Int(offset - windowStart), length: count)
    }

    /// Parses and fully verifies the record at `offset`.
    mutating func record(at offset: Int64) throws -> Outcome {
        guard try ensure(offset, Format.recordHeaderSize) else { return .invalid }
        guard case .success(let header) = RecordHeader.parse(window, at: window.readerIndex + Int(offset - windowStart))
        else { return .invalid }
        guard try ensure(offset, header.length) else { return .invalid }
        let index = window.readerIndex + Int(offset - windowStart)
        guard case .success(let record) = LogRecord.decode(window, at: index, header: header) else { return .invalid }
        return .valid(record, header.length)
    }

    /// The length given by the record header at `offset` when that header passes its own checks (magic, header CRC,
    /// field sanity), whether or not the rest of the record is intact or even inside the file; `nil` otherwise.
    mutating func headerLength(at offset: Int64) throws -> Int? {
        guard try ensure(offset, Format.recordHeaderSize) else { return nil }
        guard case .success(let header) = RecordHeader.parse(window, at: window.readerIndex + Int(offset - windowStart))
        else { return nil }
        return header.length
    }

    /// Where a scan may pick up again after the invalid record at `offset`, or `nil` when nothing valid follows.
    ///
    /// A record whose header is intact (the header CRC covers its length) is stepped over whole: the bytes inside it
    /// are its data, even where they look like records (a blob may hold a copy of a segment), and must never be read
    /// as records. Only a damaged header makes the scan search byte by byte. Recovery, compaction and verify all use
    /// this one rule.
    mutating func resumeOffset(afterInvalidAt offset: Int64) throws -> Int64? {
        if let length = try headerLength(at: offset) {
            let end = offset + Int64(length)
            return end < size ? try nextValidRecord(from: end) : nil
        }
        return try nextValidRecord(after: offset)
    }

    /// The offset of the first fully valid record after `offset`, or `nil` if there is none.
    mutating func nextValidRecord(after offset: Int64) throws -> Int64? {
        try nextValidRecord(from: offset + 1)
    }

    /// The offset of the first fully valid record at or after `offset`, or `nil` if there is none.
    mutating func nextValidRecord(from offset: Int64) throws -> Int64? {
        var position = offset
        while position + Int64(Format.recordHeaderSize) <= size {
            guard try ensure(position, Format.recordHeaderSize) else { return nil }
            let from = Int(position - windowStart)
            let found: Int? = window.withUnsafeReadableBytes { raw in
                // The magic "CREC" as it sits on disk (little-endian 0x43455243).
                var i = from
                while i + 4 <= raw.count {
                    if raw[i] == 0x43 && raw[i + 1] == 0x52 && raw[i + 2] == 0x45 && raw[i + 3] == 0x43 { return i }
                    i += 1
                }
                return nil
            }
            if let found {
                let candidate = windowStart + Int64(found)
                if case .valid = try record(at: candidate) { return candidate }
                position = candidate + 1
            } else {
                position = max(position + 1, windowStart + Int64(window.readableBytes) - 3)
            }
        }
        return nil
    }
}
