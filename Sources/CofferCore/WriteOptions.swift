/// When a write may take effect; checked atomically with the write itself.
public enum WriteCondition: Sendable, Hashable {
    /// Always.
    case none
    /// Only if no blob exists at the key (POST, `If-None-Match: *`). Fails with ``StoreError/alreadyExists``.
    case ifAbsent
    /// Only if a blob exists at the key (`If-Match: *`). Fails with ``StoreError/preconditionFailed``.
    case ifPresent
    /// Only if the current version's etag is one of these (`If-Match: "e1", "e2"`).
    /// Fails with ``StoreError/preconditionFailed``.
    case ifMatch([String])

    /// Why this condition refuses a write (or a delete) over the current version, or `nil` when it allows it: the one
    /// rule every store applies. `exists` says whether a version exists; `etag` gives its entity tag (asked only for
    /// ``ifMatch(_:)``).
    public func refusal(exists: Bool, etag: () -> String) -> StoreError? {
        switch self {
        case .none:
            return nil
        case .ifAbsent:
            return exists ? .alreadyExists : nil
        case .ifPresent:
            return exists ? nil : .preconditionFailed
        case .ifMatch(let etags):
            guard exists else { return .preconditionFailed }
            let current = etag()
            return etags.contains(where: { $0 == "*" || $0 == current }) ? nil : .preconditionFailed
        }
    }

    /// ``refusal(exists:etag:)`` over a version described by `current` (`nil`: absent).
    public func refusal(current: BlobInfo?) -> StoreError? {
        refusal(exists: current != nil) { current?.etag ?? "" }
    }
}

/// Everything about a write except its key and body.
public struct WriteOptions: Sendable {
    public var condition: WriteCondition
    /// Stored and returned on reads; `nil` means ``BlobInfo/defaultContentType``.
    public var contentType: String?
    /// The announced body length (Content-Length), when known; the write fails if the body differs.
    public var expectedLength: Int64?
    /// MD5 the client announced (Content-MD5); the write fails with ``StoreError/digestMismatch`` if it differs.
    public var expectedMD5: [UInt8]?
    /// SHA-256 the client announced (x-content-sha256); checked like ``expectedMD5``.
    public var expectedSHA256: [UInt8]?

    public init(
        condition: WriteCondition = .none,
        contentType: String? = nil,
        expectedLength: Int64? = nil,
        expectedMD5: [UInt8]? = nil,
        expectedSHA256: [UInt8]? = nil
    ) {
        self.condition = condition
        self.contentType = contentType
        self.expectedLength = expectedLength
        self.expectedMD5 = expectedMD5
        self.expectedSHA256 = expectedSHA256
    }
}

/// The outcome of a successful write.
public struct WriteResult: Sendable, Hashable {
    /// `true` if no blob existed at the key before.
    public var created: Bool
    public var info: BlobInfo

    public init(created: Bool, info: BlobInfo) {
        self.created = created
        self.info = info
    }
}
