/// What a store knows about one stored version of a blob, without its bytes.
public struct BlobInfo: Sendable, Hashable {
    /// Length of the blob in bytes.
    public var size: Int64
    /// Strong entity tag of this version, without quotes (lowercase hex MD5 of the bytes on the node).
    public var etag: String
    /// When this version was written, in milliseconds since the Unix epoch.
    public var lastModifiedMillis: Int64
    /// The media type given at upload time, or `application/octet-stream`.
    public var contentType: String

    public init(size: Int64, etag: String, lastModifiedMillis: Int64, contentType: String) {
        self.size = size
        self.etag = etag
        self.lastModifiedMillis = lastModifiedMillis
        self.contentType = contentType
    }

    /// The media type used when an upload names none.
    public static let defaultContentType = "application/octet-stream"
}
