/// The name of a blob inside a store: opaque UTF-8, at most ``BlobKey/maxUTF8Length`` bytes.
///
/// The HTTP layer builds keys from a route family and a validated location (`store/a/b`, `object/abc`);
/// the store treats the whole string as an opaque name.
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

    public var description: String { rawValue }
}
