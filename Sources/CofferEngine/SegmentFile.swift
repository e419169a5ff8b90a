import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An open segment. Readers hold a reference while they read, so a segment removed by compaction stays readable
/// until the last reader is done; the descriptor closes when the last reference goes.
final class SegmentFile: Sendable {
    let id: UInt32
    let path: String
    let fd: CInt
    private let io: any FileIO
    private let closed = Atomic(false)

    init(id: UInt32, path: String, fd: CInt, io: any FileIO) {
        self.id = id
        self.path = path
        self.fd = fd
        self.io = io
    }

    deinit {
        close()
    }

    /// Closes the descriptor now (once). Only when no read can still use it: the engine calls it after its I/O
    /// threads have stopped.
    func close() {
        if !closed.exchange(true, ordering: .acquiringAndReleasing) {
            try? io.close(fd)
        }
    }

    static func fileName(id: UInt32) -> String {
        hex16(UInt64(id)) + Format.segmentSuffix
    }

    /// The 32-byte header of segment `id`.
    static func header(id: UInt32, createdMillis: Int64) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: Format.segmentHeaderSize)
        buffer.writeInteger(Format.segmentMagic, endianness: .little)
        buffer.writeInteger(Format.segmentVersion, endianness: .little)
        buffer.writeInteger(id, endianness: .little)
        buffer.writeInteger(createdMillis, endianness: .little)
        buffer.writeInteger(UInt32(0), endianness: .little)
        buffer.writeInteger(CRC32C.checksum(buffer), endianness: .little)
        return buffer
    }

    /// `true` when `buffer` starts with a valid header for segment `id`.
    static func validHeader(_ buffer: ByteBuffer, id: UInt32) -> Bool {
        let start = buffer.readerIndex
        guard buffer.readableBytes >= Format.segmentHeaderSize,
            buffer.getInteger(at: start, endianness: .little, as: UInt64.self) == Format.segmentMagic,
            buffer.getInteger(at: start + Format.segmentHeaderVersionOffset, endianness: .little, as: UInt32.self)
                == Format.segmentVersion,
            buffer.getInteger(at: start + Format.segmentHeaderIDOffset, endianness: .little, as: UInt32.self) == id,
            let crc = buffer.getInteger(at: start + Format.segmentHeaderCRCOffset, endianness: .little, as: UInt32.self)
        else { return false }
        return CRC32C.checksum(buffer, at: start, length: Format.segmentHeaderCRCOffset) == crc
    }
}

/// 16 lowercase hex digits.
func hex16(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}

/// Parses a name made by ``hex16(_:)`` followed by `suffix`.
func parseHexName(_ name: String, suffix: String) -> UInt64? {
    guard name.hasSuffix(suffix) else { return nil }
    let stem = name.dropLast(suffix.count)
    guard stem.count == 16 else { return nil }
    return UInt64(stem, radix: 16)
}
