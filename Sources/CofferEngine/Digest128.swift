/// A 16-byte digest (the MD5 that makes a blob's etag), stored as two words to keep index entries small.
public struct Digest128: Hashable, Sendable {
    /// Bytes 0..<8, big-endian.
    public var high: UInt64
    /// Bytes 8..<16, big-endian.
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// `bytes` must hold exactly 16 bytes.
    public init<Bytes: Sequence<UInt8>>(bytes: Bytes) {
        var high: UInt64 = 0
        var low: UInt64 = 0
        var index = 0
        for byte in bytes {
            if index < 8 {
                high = high << 8 | UInt64(byte)
            } else {
                low = low << 8 | UInt64(byte)
            }
            index += 1
        }
        precondition(index == 16, "a Digest128 takes exactly 16 bytes")
        self.init(high: high, low: low)
    }

    /// The 16 bytes, in order.
    public var bytes: [UInt8] {
        (0..<16).map { i in
            i < 8
                ? UInt8(truncatingIfNeeded: high >> (56 - 8 * i)) : UInt8(truncatingIfNeeded: low >> (56 - 8 * (i - 8)))
        }
    }

    /// 32 lowercase hex digits.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(32)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
