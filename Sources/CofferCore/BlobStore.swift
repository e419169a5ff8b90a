import NIOCore

/// The one storage abstraction the HTTP layer serves. The node's log engine and the gateway's sharded S3 store both
/// implement it.
///
/// Every operation on a single key is linearizable: a read that starts after a write was acknowledged sees that
/// write (or a later one), and a read never mixes bytes of two versions.
public protocol BlobStore: Sendable {
    /// Reads (part of) the blob at `key`, applying the conditions in `options` to the version it finds.
    ///
    /// - Errors: ``StoreError/notFound``; ``StoreError/corrupt`` when the stored bytes fail their checksum (they are
    ///   never returned); ``StoreError/io``.
    func read(_ key: BlobKey, options: ReadOptions) async throws -> BlobRead

    /// Stores `body` under `key`, replacing any previous version when `options.condition` allows it.
    ///
    /// - Durability: returns only once the new version survives a crash or power loss.
    /// - Errors: ``StoreError/alreadyExists``, ``StoreError/preconditionFailed``, ``StoreError/tooLarge``,
    ///   ``StoreError/digestMismatch``, ``StoreError/incompleteBody``, ``StoreError/insufficientStorage``,
    ///   ``StoreError/io``. On any error the previous version is untouched.
    func write(
        _ key: BlobKey,
        body: some AsyncSequence<ByteBuffer, any Error> & Sendable,
        options: WriteOptions
    ) async throws -> WriteResult

    /// Deletes the blob at `key` if `condition` holds, returning the version that was removed.
    ///
    /// - Durability: returns only once the delete survives a crash or power loss.
    /// - Errors: ``StoreError/notFound``, ``StoreError/preconditionFailed``, ``StoreError/insufficientStorage``,
    ///   ``StoreError/io``.
    func delete(_ key: BlobKey, condition: WriteCondition) async throws -> BlobInfo

    /// Answers a read at once when the store can without blocking: the bytes are in memory, or none are needed
    /// (HEAD, 304, 412, 416, not found). Returns `nil` when the answer would need I/O; the caller then uses
    /// ``read(_:options:)``. Never blocks, so an event loop may call it. Same guarantees as ``read(_:options:)``;
    /// never returns a streamed body.
    func readNow(_ key: BlobKey, options: ReadOptions) -> Result<BlobRead, StoreError>?
}

extension BlobStore {
    /// By default nothing is answered at once.
    public func readNow(_ key: BlobKey, options: ReadOptions) -> Result<BlobRead, StoreError>? { nil }
}
