import CofferCore
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writes one spill file: `<id>.blob.partial` while the body streams in, renamed to `<id>.blob` once complete and
/// fsynced. Used by one upload at a time; its blocking methods run on the engine's I/O threads.
final class SpillWriter: @unchecked Sendable {
    let id: UInt64
    let partialPath: String
    let finalPath: String
    private let fd: CInt
    private let io: any FileIO
    private let blockSize: Int
    private var closed = false
    private var renamed = false

    /// Data bytes accepted so far (written or pending).
    private(set) var length: Int64 = 0
    private var flushed: Int64 = 0
    private var pending: ByteBuffer
    private var blockCRCs: [UInt32] = []
    private var blockCRC: UInt32 = 0
    private var blockFill = 0

    private init(id: UInt64, directory: String, fd: CInt, io: any FileIO, blockSize: Int) {
        self.id = id
        self.partialPath = directory + "/" + hex16(id) + Format.spillPartialSuffix
        self.finalPath = directory + "/" + hex16(id) + Format.spillSuffix
        self.fd = fd
        self.io = io
        self.blockSize = blockSize
        self.pending = ByteBufferAllocator().buffer(capacity: 0)
    }

    /// Creates `<directory>/<id>.blob.partial`. Blocking.
    static func create(directory: String, id: UInt64, io: any FileIO) throws -> SpillWriter {
        let path = directory + "/" + hex16(id) + Format.spillPartialSuffix
        let fd = try io.open(path, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
        return SpillWriter(id: id, directory: directory, fd: fd, io: io, blockSize: Format.spillBlockSize)
    }

    /// Takes `chunk` into the pending buffer and the block CRCs. CPU only; call ``flush()`` when
    /// ``pendingBytes`` grows large.
    func append(_ chunk: ByteBuffer) {
        chunk.withUnsafeReadableBytes { raw in
            var rest = raw[...]
            while !rest.isEmpty {
                let take = min(rest.count, blockSize - blockFill)
                blockCRC = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: rest.prefix(take)), continuing: blockCRC)
                blockFill += take
                rest = rest.dropFirst(take)
                if blockFill == blockSize {
                    blockCRCs.append(blockCRC)
                    blockCRC = 0
                    blockFill = 0
                }
            }
        }
        if pending.readableBytes == 0 && pending.capacity == 0 {
            pending = ByteBufferAllocator().buffer(capacity: max(chunk.readableBytes, 1 << 20))
        }
        pending.writeImmutableBuffer(chunk)
        length += Int64(chunk.readableBytes)
    }

    var pendingBytes: Int { pending.readableBytes }

    /// Writes the pending bytes. Blocking.
    func flush() throws {
        guard pending.readableBytes > 0 else { return }
        try io.writeAll(fd, pending, offset: Int64(Format.spillHeaderSize) + flushed)
        flushed += Int64(pending.readableBytes)
        pending.clear()
    }

    /// Writes the rest, the block table and the header, fsyncs, closes and renames to the final name.
    /// Returns the CRC of the block table, which the commit record stores. Blocking.
    ///
    /// Durability: the file's bytes are durable on return; its name is durable once the blobs directory is fsynced
    /// (the group commit does that before it writes the record that references the file).
    func finish() throws -> UInt32 {
        try flush()
        if blockFill > 0 {
            blockCRCs.append(blockCRC)
            blockFill = 0
        }
        var tail = ByteBufferAllocator().buffer(capacity: blockCRCs.count * 4 + 4)
        for crc in blockCRCs { tail.writeInteger(crc, endianness: .little) }
        let tableCRC = CRC32C.checksum(tail)
        tail.writeInteger(tableCRC, endianness: .little)
        try io.writeAll(fd, tail, offset: Format.spillTableOffset(length: length))
        var header = ByteBufferAllocator().buffer(capacity: Format.spillHeaderSize)
        header.writeInteger(Format.spillMagic, endianness: .little)
        header.writeInteger(id, endianness: .little)
        header.writeInteger(UInt64(length), endianness: .little)
        header.writeInteger(UInt32(blockSize), endianness: .little)
        header.writeInteger(CRC32C.checksum(header), endianness: .little)
        try io.writeAll(fd, header, offset: 0)
        try io.fdatasync(fd)
        closed = true
        try io.close(fd)
        try io.rename(partialPath, to: finalPath)
        renamed = true
        return tableCRC
    }

    /// Closes and removes the file, whatever state it is in. Blocking; never throws.
    func abort() {
        if !closed {
            closed = true
            try? io.close(fd)
        }
        try? io.unlink(renamed ? finalPath : partialPath)
    }

    var blockSizeValue: UInt32 { UInt32(blockSize) }
}

/// Reads a committed spill file, verifying every block against the block-CRC table (itself pinned by the CRC in the
/// commit record) before any of its bytes are returned.
final class SpillReader: Sendable {
    let fd: CInt
    let length: Int64
    let blockSize: Int
    private let table: [UInt32]
    private let io: any FileIO

    private init(fd: CInt, length: Int64, blockSize: Int, table: [UInt32], io: any FileIO) {
        self.fd = fd
        self.length = length
        self.blockSize = blockSize
        self.table = table
        self.io = io
    }

    deinit {
        try? io.close(fd)
    }

    static func path(directory: String, id: UInt64) -> String {
        directory + "/" + hex16(id) + Format.spillSuffix
    }

    /// Opens and checks header and table. Blocking.
    ///
    /// Errors: `IOError` (ENOENT when the file is gone); ``StoreError/corrupt`` when the header or table does not
    /// match what the record says.
    static func open(
        directory: String, id: UInt64, length: Int64, blockSize: UInt32, tableCRC: UInt32, io: any FileIO
    ) throws -> SpillReader {
        let fd = try io.open(path(directory: directory, id: id), flags: O_RDONLY, mode: 0)
        do {
            let header = try io.read(fd, count: Format.spillHeaderSize, offset: 0)
            guard header.readableBytes == Format.spillHeaderSize,
                header.getInteger(at: 0, endianness: .little, as: UInt64.self) == Format.spillMagic,
                header.getInteger(at: Format.spillHeaderIDOffset, endianness: .little, as: UInt64.self) == id,
                header.getInteger(at: Format.spillHeaderLengthOffset, endianness: .little, as: UInt64.self)
                    == UInt64(length),
                header.getInteger(at: Format.spillHeaderBlockSizeOffset, endianness: .little, as: UInt32.self)
                    == blockSize,
                header.getInteger(at: Format.spillHeaderCRCOffset, endianness: .little, as: UInt32.self)
                    == CRC32C.checksum(header, at: 0, length: Format.spillHeaderCRCOffset),
                blockSize > 0
            else { throw StoreError.corrupt.with(message: "spill file header does not match its record") }
            let blocks = Format.spillBlockCount(length: length, blockSize: Int(blockSize))
            let raw = try io.read(fd, count: blocks * 4 + 4, offset: Format.spillTableOffset(length: length))
            guard raw.readableBytes == blocks * 4 + 4,
                CRC32C.checksum(raw, at: 0, length: blocks * 4) == tableCRC,
                raw.getInteger(at: blocks * 4, endianness: .little, as: UInt32.self) == tableCRC
            else { throw StoreError.corrupt.with(message: "spill file block table does not match its record") }
            let table = (0..<blocks).map { raw.getInteger(at: $0 * 4, endianness: .little, as: UInt32.self)! }
            return SpillReader(fd: fd, length: length, blockSize: Int(blockSize), table: table, io: io)
        } catch {
            try? io.close(fd)
            throw error
        }
    }

    /// A new descriptor of the spill file for the caller to own (a sendfile of verified bytes outlives this reader).
    func duplicateDescriptor() throws -> CInt {
        let copy = dup(fd)
        guard copy >= 0 else { throw IOError(errnoCode: errno, reason: "dup") }
        return copy
    }

    /// Reads the whole blocks covering `range` (at most `maxBytes` of them past the first), verifies each, and
    /// returns the bytes of `range` they hold, which may be a prefix of `range`. Blocking.
    ///
    /// Errors: ``StoreError/corrupt`` on a CRC mismatch or a short file; `IOError`.
    func read(_ range: Range<Int64>, maxBytes: Int) throws -> ByteBuffer {
        let bs = Int64(blockSize)
        let firstBlock = range.lowerBound / bs
        let wanted = min(range.upperBound, range.lowerBound + Int64(max(maxBytes, 1)))
        let lastBlock = (wanted - 1) / bs
        let start = firstBlock * bs
        let end = min((lastBlock + 1) * bs, length)
        let count = Int(end - start)
        let buffer = try io.read(fd, count: count, offset: Int64(Format.spillHeaderSize) + start)
        guard buffer.readableBytes == count else {
            throw StoreError.corrupt.with(message: "spill file is shorter than its record says")
        }
        var offset = 0
        for block in firstBlock...lastBlock {
            let n = min(blockSize, count - offset)
            guard CRC32C.checksum(buffer, at: buffer.readerIndex + offset, length: n) == table[Int(block)] else {
                throw StoreError.corrupt.with(message: "spill file block \(block) failed its checksum")
            }
            offset += n
        }
        let from = Int(range.lowerBound - start)
        let to = Int(min(range.upperBound, end) - start)
        return buffer.getSlice(at: buffer.readerIndex + from, length: to - from)!
    }
}
