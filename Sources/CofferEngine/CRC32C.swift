import CCRC32C
import NIOCore

/// CRC-32C (Castagnoli) with the CPU's instruction when it has one.
public enum CRC32C {
    /// The CRC of `bytes`, continuing from `crc` (0 to start).
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        coffer_crc32c(crc, bytes.baseAddress, bytes.count)
    }

    /// The CRC of the readable bytes of `buffer`, continuing from `crc`.
    @inlinable
    public static func checksum(_ buffer: ByteBuffer, continuing crc: UInt32 = 0) -> UInt32 {
        buffer.withUnsafeReadableBytes { checksum($0, continuing: crc) }
    }

    /// The CRC of `length` bytes of `buffer` starting at absolute index `at`.
    @inlinable
    public static func checksum(_ buffer: ByteBuffer, at index: Int, length: Int, continuing crc: UInt32 = 0) -> UInt32
    {
        buffer.withUnsafeReadableBytes { raw in
            let start = index - buffer.readerIndex
            return checksum(UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)]), continuing: crc)
        }
    }

    /// The CRC of a byte array.
    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// `true` when the hardware instruction is used.
    public static var isHardwareAccelerated: Bool { coffer_crc32c_is_hardware() != 0 }
}
