/// The one error type every ``BlobStore`` throws.
///
/// A struct around a private code, so new cases can be added without breaking callers (the NIO style).
/// Compare with the static members (`error == .notFound`, or `case .notFound:` in a `switch`); equality looks
/// only at the code, never at the message. The HTTP layer maps each code to a status in exactly one place.
public struct StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: String, Hashable, Sendable {
        case notFound = "not_found"
        case alreadyExists = "already_exists"
        case preconditionFailed = "precondition_failed"
        case invalidKey = "invalid_key"
        case tooLarge = "too_large"
        case digestMismatch = "digest_mismatch"
        case incompleteBody = "incomplete_body"
        case insufficientStorage = "insufficient_storage"
        case corrupt = "corrupt_data"
        case io = "io_error"
        case unavailable = "unavailable"
        case busy = "busy"
        case badGateway = "bad_gateway"
    }

    private let code: Code
    /// A human-readable explanation, safe to show to clients.
    public let message: String

    private init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A stable snake_case identifier of the code, used as the `error` field of JSON error bodies.
    public var identifier: String { code.rawValue }

    public var description: String { "\(code.rawValue): \(message)" }

    /// A copy with another message and the same code.
    public func with(message: String) -> StoreError { StoreError(code, message) }

    public static func == (lhs: StoreError, rhs: StoreError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }

    /// No blob under that key.
    public static let notFound = StoreError(.notFound, "no blob at this location")
    /// A create-only write found a blob already there.
    public static let alreadyExists = StoreError(.alreadyExists, "a blob already exists at this location")
    /// A conditional write's condition did not hold.
    public static let preconditionFailed = StoreError(.preconditionFailed, "the write condition does not hold")
    /// The key is not acceptable to the store.
    public static let invalidKey = StoreError(.invalidKey, "invalid key")
    /// The body is larger than the store accepts.
    public static let tooLarge = StoreError(.tooLarge, "the body exceeds the maximum blob size")
    /// A digest announced by the client does not match the body received.
    public static let digestMismatch = StoreError(.digestMismatch, "the body does not match the announced digest")
    /// The body ended before its announced length, or the client went away.
    public static let incompleteBody = StoreError(.incompleteBody, "the body ended early")
    /// The disk (or quota) is full; nothing was changed.
    public static let insufficientStorage = StoreError(.insufficientStorage, "not enough storage space")
    /// Stored bytes failed their checksum; they were not returned.
    public static let corrupt = StoreError(.corrupt, "stored data failed its checksum")
    /// An I/O error other than a full disk; the write, if any, was not committed.
    public static let io = StoreError(.io, "storage I/O error")
    /// The store is shutting down or failed and cannot take the request.
    public static let unavailable = StoreError(.unavailable, "the store is unavailable")
    /// A backend asked us to slow down and the retry deadline passed.
    public static let busy = StoreError(.busy, "the store is busy, retry later")
    /// A backend (behind a gateway) answered with an error about this request, or with an answer that cannot be the
    /// object: retrying the same request will not help. The message names the backend and its status.
    public static let badGateway = StoreError(.badGateway, "a backend failed this request")
}
