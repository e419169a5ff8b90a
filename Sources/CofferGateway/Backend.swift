import CofferCore
import NIOCore

/// One storage target behind the gateway: an S3 bucket (``S3Backend``) or a plain HTTP prefix (``HTTPBackend``).
///
/// A backend does one HTTP exchange per call: no retries, no queueing, no caps. ``BackendGate`` adds those around
/// it, and ``ShardedStore`` picks backends per key. Keys are passed as given (already namespaced by the HTTP
/// layer, such as `object/abc`); each backend maps them to its own paths.
public protocol Backend: Sendable {
    /// A stable identity, used by rendezvous hashing: equal for the same target however it was found
    /// (for example `s3://127.0.0.1:9000/coffer`). Never contains credentials.
    var id: String { get }

    /// Fetches metadata only.
    ///
    /// - Errors: ``BackendError`` (`.notFound` when the key is absent).
    func head(_ key: String) async throws -> BackendObject

    /// Fetches the object's bytes, or the bytes of `range` (half-open) when given. The body streams at the
    /// reader's pace: the caller must iterate it to the end or drop it.
    ///
    /// `expectedSize` is the object's length when the caller knows it (the shared-volume gateway knows what it
    /// wrote): a backend that sends a body without a length (chunked) is then held to exactly that many bytes, and
    /// its body throws `.invalidResponse` when it has another length.
    ///
    /// - Errors: ``BackendError`` (`.notFound` when the key is absent, `.rangeNotSatisfiable`).
    func get(_ key: String, range: Range<Int64>?, expectedSize: Int64?) async throws -> BackendGet

    /// Stores `body` under `key`, replacing any previous object.
    ///
    /// - Durability: whatever the backend promises once it answered 2xx.
    /// - Errors: ``BackendError``.
    func put(_ key: String, body: BackendBody, contentType: String?) async throws -> BackendObject

    /// Deletes `key`. Deleting an absent key succeeds on S3 (204); HTTP backends may answer `.notFound`.
    ///
    /// - Errors: ``BackendError``.
    func delete(_ key: String) async throws

    /// A cheap request that proves the backend answers (used by health checks); throws when it does not.
    func probe() async throws
}

extension Backend {
    /// ``get(_:range:expectedSize:)`` without a known size.
    public func get(_ key: String, range: Range<Int64>?) async throws -> BackendGet {
        try await get(key, range: range, expectedSize: nil)
    }
}

/// What a backend knows about one stored object.
public struct BackendObject: Sendable, Hashable {
    /// Total length of the object (not of a range).
    public var size: Int64
    /// The entity tag without quotes (S3: MD5 hex for single-part uploads), or `nil` when the backend gave none.
    public var etag: String?
    /// Last-Modified in milliseconds since the epoch, when given.
    public var lastModifiedMillis: Int64?
    public var contentType: String?

    public init(size: Int64, etag: String?, lastModifiedMillis: Int64?, contentType: String?) {
        self.size = size
        self.etag = etag
        self.lastModifiedMillis = lastModifiedMillis
        self.contentType = contentType
    }
}

/// The answer to ``Backend/get(_:range:)``: metadata, the range served, and a body that streams.
public struct BackendGet: Sendable {
    public var object: BackendObject
    /// The bytes the body holds within the object (`0..<size` for a whole read).
    public var range: Range<Int64>
    /// Exactly `range.count` bytes; throws ``BackendError`` if the connection breaks or the length is wrong.
    public var body: ByteStream

    public init(object: BackendObject, range: Range<Int64>, body: ByteStream) {
        self.object = object
        self.range = range
        self.body = body
    }
}

/// A request body for ``Backend/put(_:body:contentType:)``.
public enum BackendBody: Sendable {
    /// Whole in memory: can be sent several times (retries, replicas).
    case buffer(ByteBuffer)
    /// Streamed at constant memory, exactly `length` bytes; can be sent once.
    case stream(length: Int64, ByteStream)

    public var length: Int64 {
        switch self {
        case .buffer(let buffer): Int64(buffer.readableBytes)
        case .stream(let length, _): length
        }
    }
}

/// Why a backend call failed, classified for retry and health decisions.
///
/// A struct around a private kind (the NIO style); compare with the static members or ``kind``.
public struct BackendError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The key is absent (404, S3 `NoSuchKey`).
        case notFound
        /// The range lies outside the object (416).
        case rangeNotSatisfiable
        /// The backend asked us to slow down (429, 503, S3 `SlowDown`): retry after a pause.
        case throttled
        /// The backend could not be reached or gave no answer (connect refused, timeout, reset): it may be down. The
        /// only kind that counts against the backend's health (its circuit breaker).
        case unavailable
        /// The backend refused the request itself (other 4xx, such as S3 `AccessDenied`): retrying will not help.
        case rejected
        /// The backend answered this request with a server error (500, 501, 502, 504, ...): a failure about this
        /// request (a name its file system refuses, say), not a sign that the backend is down. Not retried.
        case failed
        /// The backend answered, but its answer cannot be the object: a malformed header, or a body of another length
        /// than it announced or than the gateway knows the object to have. Not a sign that the backend is down.
        case invalidResponse
        /// The backend is full (507, S3 `EntityTooLarge` is `.rejected`).
        case insufficientStorage
    }

    public var kind: Kind
    /// The HTTP status, when the backend answered at all.
    public var status: Int?
    /// The backend's own code when it gave one (S3 XML `<Code>`), else a short description.
    public var code: String
    public var message: String
    /// The backend's `Retry-After`, in seconds, when it gave one.
    public var retryAfterSeconds: Int?
    /// The backend's id, filled in by its ``BackendGate``.
    public var backend: String?

    public init(_ kind: Kind, status: Int? = nil, code: String, message: String = "", retryAfterSeconds: Int? = nil) {
        self.kind = kind
        self.status = status
        self.code = code
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var description: String {
        "\(kind) (\(status.map(String.init) ?? "no status") \(code)): \(message)"
    }

    /// Whether the error says the backend itself is down (and so counts against its circuit breaker): only when no
    /// answer came. Statuses, however bad, and answers the gateway cannot use are about one request.
    public var isBackendFailure: Bool { kind == .unavailable }

    /// Classifies an HTTP status the way every backend does: 404, 416, 429/503, 507, other 4xx, other 5xx.
    public static func kind(forStatus status: Int) -> Kind {
        switch status {
        case 404: .notFound
        case 416: .rangeNotSatisfiable
        case 429, 503: .throttled
        case 507: .insufficientStorage
        case 400..<500: .rejected
        default: .failed
        }
    }
}
