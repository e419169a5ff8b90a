/// A requested byte range, as a client states it (not yet resolved against a size).
public enum ByteRangeSpec: Sendable, Hashable {
    /// `bytes=first-last` (inclusive) or, with `last == nil`, `bytes=first-`.
    case from(first: Int64, last: Int64?)
    /// `bytes=-n`: the last `n` bytes.
    case suffix(Int64)

    /// The half-open range this spec selects in a blob of `size` bytes, or `nil` when unsatisfiable (RFC 9110 §14.1.2).
    public func resolve(size: Int64) -> Range<Int64>? {
        switch self {
        case .from(let first, let last):
            guard first >= 0, first < size else { return nil }
            if let last {
                guard last >= first else { return nil }
                return first..<(min(last, size - 1) + 1)
            }
            return first..<size
        case .suffix(let n):
            guard n > 0, size > 0 else { return nil }
            return max(0, size - n)..<size
        }
    }
}

/// How to read a blob: which part, under which conditions, and whether to return bytes at all.
public struct ReadOptions: Sendable {
    public var range: ByteRangeSpec?
    /// `If-Match` etags (without quotes; `*` matches any); on mismatch the outcome is ``ReadOutcome/preconditionFailed``.
    public var ifMatch: [String]?
    /// `If-None-Match` etags (without quotes; `*` matches any); on match the outcome is ``ReadOutcome/notModified``.
    public var ifNoneMatch: [String]?
    /// `false` for HEAD: resolve everything but return no bytes.
    public var includeBody: Bool

    public init(
        range: ByteRangeSpec? = nil,
        ifMatch: [String]? = nil,
        ifNoneMatch: [String]? = nil,
        includeBody: Bool = true
    ) {
        self.range = range
        self.ifMatch = ifMatch
        self.ifNoneMatch = ifNoneMatch
        self.includeBody = includeBody
    }

    /// Decides the outcome of a read of `info` under these options, before any byte is read.
    /// Stores call this so that every implementation applies the same rules.
    public func evaluate(against info: BlobInfo) -> ReadDecision {
        if let ifMatch, !ifMatch.contains(where: { $0 == "*" || $0 == info.etag }) {
            return .preconditionFailed
        }
        if let ifNoneMatch, ifNoneMatch.contains(where: { $0 == "*" || $0 == info.etag }) {
            return .notModified
        }
        guard let range else { return .full }
        guard let resolved = range.resolve(size: info.size) else { return .rangeNotSatisfiable }
        return .partial(resolved)
    }
}

extension ReadOptions {
    /// The bytes a read decided as `decision` returns from a blob of `size` bytes: `nil` when it returns none (HEAD,
    /// 304, 412, 416).
    public func bodyRange(for decision: ReadDecision, size: Int64) -> Range<Int64>? {
        guard includeBody else { return nil }
        switch decision {
        case .full: return 0..<size
        case .partial(let range): return range
        case .notModified, .preconditionFailed, .rangeNotSatisfiable: return nil
        }
    }
}

/// What a read resolves to before bytes are read; see ``ReadOptions/evaluate(against:)``.
public enum ReadDecision: Sendable, Hashable {
    case full
    case partial(Range<Int64>)
    case notModified
    case preconditionFailed
    case rangeNotSatisfiable
}

/// The result of ``BlobStore/read(_:options:)``.
public struct BlobRead: Sendable {
    /// The version the read resolved to.
    public var info: BlobInfo
    /// What the conditions and range resolved to.
    public var decision: ReadDecision
    /// The selected bytes, for ``ReadDecision/full`` and ``ReadDecision/partial(_:)`` when a body was asked for.
    public var body: BlobBody?

    public init(info: BlobInfo, decision: ReadDecision, body: BlobBody?) {
        self.info = info
        self.decision = decision
        self.body = body
    }
}
