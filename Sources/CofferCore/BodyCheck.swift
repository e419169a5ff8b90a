import Crypto
import NIOCore

/// The checks of a write's body against what the client announced and what the store accepts: its length
/// (Content-Length), its MD5 (Content-MD5), its SHA-256 (x-content-sha256) and the largest blob the store takes. The
/// one home of these rules: the engine and the gateway feed every chunk through it before anything is committed.
///
/// The MD5 is always computed: it is the etag.
public struct BodyCheck {
    private let expectedLength: Int64?
    private let expectedMD5: [UInt8]?
    private let expectedSHA256: [UInt8]?
    private let maxSize: Int64?
    private var md5 = Insecure.MD5()
    private var sha256: SHA256?
    /// Bytes seen so far.
    public private(set) var count: Int64 = 0
    /// The MD5 of the whole body, once ``finish()`` passed.
    public private(set) var md5Digest: [UInt8] = []

    /// - Errors: ``StoreError/incompleteBody`` for a negative announced length; ``StoreError/tooLarge`` for an
    ///   announced length over `maxSize`.
    public init(_ options: WriteOptions, maxSize: Int64? = nil) throws {
        expectedLength = options.expectedLength
        expectedMD5 = options.expectedMD5
        expectedSHA256 = options.expectedSHA256
        self.maxSize = maxSize
        sha256 = options.expectedSHA256 == nil ? nil : SHA256()
        if let expected = options.expectedLength {
            // No body can match a negative length (and it must not reach a buffer's capacity: that traps).
            if expected < 0 {
                throw StoreError.incompleteBody.with(message: "the announced length \(expected) is negative")
            }
            if let maxSize, expected > maxSize { throw StoreError.tooLarge }
        }
    }

    /// Adds `chunk`; fails as soon as the body runs past its announced length or the largest size.
    ///
    /// - Errors: ``StoreError/tooLarge``, ``StoreError/incompleteBody``.
    public mutating func update(_ chunk: ByteBuffer) throws {
        count += Int64(chunk.readableBytes)
        if let maxSize, count > maxSize { throw StoreError.tooLarge }
        if let expectedLength, count > expectedLength {
            throw StoreError.incompleteBody.with(message: "the body is longer than its announced length")
        }
        chunk.withUnsafeReadableBytes { raw in
            md5.update(bufferPointer: raw)
            sha256?.update(bufferPointer: raw)
        }
    }

    /// Checks the whole body.
    ///
    /// - Errors: ``StoreError/incompleteBody`` for another length than announced; ``StoreError/digestMismatch``.
    public mutating func finish() throws {
        if let expectedLength, count != expectedLength {
            throw StoreError.incompleteBody.with(
                message: "the body has \(count) bytes but \(expectedLength) were announced")
        }
        let digest = Array(md5.finalize())
        if let expectedMD5, expectedMD5 != digest {
            throw StoreError.digestMismatch.with(message: "the body does not match its Content-MD5")
        }
        if let expectedSHA256, let sha256, Array(sha256.finalize()) != expectedSHA256 {
            throw StoreError.digestMismatch.with(message: "the body does not match its x-content-sha256")
        }
        md5Digest = digest
    }

    /// ``md5Digest`` in lowercase hex (the etag).
    public var md5Hex: String { Hex.lowercase(md5Digest) }
}
