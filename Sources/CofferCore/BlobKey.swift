/// The name of a blob inside a store: opaque UTF-8, at most ``BlobKey/maxUTF8Length`` bytes.
///
/// The HTTP layer builds keys from a route family and a validated location (`store/a/b`, `object/abc`);
/// the store treats the whole string as an opaque name.
///
/// Keys are equal when their UTF-8 bytes are: `café` spelled with a precomposed `é` (C3 A9) and with `e` and a
/// combining accent (65 CC 81) are two keys, as they are to S3 and to the gateway's placement, although Swift's
/// `String` calls them equal. Every map from names to anything in the stores is keyed by `BlobKey` for that reason.
public struct BlobKey: Hashable, Sendable, CustomStringConvertible {
    /// The longest key a store must accept, in UTF-8 bytes.
    public static let maxUTF8Length = 2048

    public let rawValue: String

    /// Returns `nil` when the key is empty or longer than ``maxUTF8Length`` bytes.
    public init?(_ rawValue: String) {
        let count = rawValue.utf8.count
        guard count > 0, count <= Self.maxUTF8Length else { return nil }
        self.rawValue = rawValue
    }

    /// A key known to be valid (read back from storage, where only valid keys are written).
    public init(unchecked rawValue: String) {
        self.rawValue = rawValue
    }

    public var description: String { rawValue }

    public static func == (lhs: BlobKey, rhs: BlobKey) -> Bool {
        lhs.rawValue.utf8.elementsEqual(rhs.rawValue.utf8)
    }

    public func hash(into hasher: inout Hasher) {
        let hashed: Void? = rawValue.utf8.withContiguousStorageIfAvailable {
            hasher.combine(bytes: UnsafeRawBufferPointer($0))
        }
        if hashed == nil {
            for byte in rawValue.utf8 { hasher.combine(byte) }
        }
        hasher.combine(rawValue.utf8.count)
    }
}
