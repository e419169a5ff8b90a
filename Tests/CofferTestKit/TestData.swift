/// Deterministic test bodies: the same seed always gives the same bytes, so failures reproduce.
public enum TestData {
    /// `count` pseudo-random bytes from `seed` (SplitMix64).
    public static func bytes(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
        var generator = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15)
        var out = [UInt8]()
        out.reserveCapacity(count + 8)
        while out.count < count {
            withUnsafeBytes(of: generator.next().littleEndian) { out.append(contentsOf: $0) }
        }
        out.removeLast(out.count - count)
        return out
    }

    public static func text(_ string: String) -> [UInt8] { Array(string.utf8) }

    /// Splits `bytes` into parts of at most `size` bytes.
    public static func split(_ bytes: [UInt8], every size: Int) -> [[UInt8]] {
        stride(from: 0, to: bytes.count, by: size).map { Array(bytes[$0..<min($0 + size, bytes.count)]) }
    }

    public static let kib = 1024
    public static let mib = 1024 * 1024
}
