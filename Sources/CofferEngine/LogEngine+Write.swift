import CofferCore
import Crypto
import Logging
import NIOCore

extension LogEngine {
    /// Stores `body` under `key`. Bodies up to the inline threshold are gathered in memory and written inside the
    /// log record; larger ones stream to a spill file at constant memory, which a small record then commits.
    ///
    /// - Durability: returns only after the record (and its spill file and directory entry) are fsynced.
    /// - Errors: see ``BlobStore/write(_:body:options:)``. On any error nothing is committed and a spill file, if one
    ///   was started, is removed.
    public func write(
        _ key: BlobKey,
        body: some AsyncSequence<ByteBuffer, any Error> & Sendable,
        options: WriteOptions
    ) async throws -> WriteResult {
        try checkWritable()
        if let refusal = IndexEntry.check(options.condition, current: lookup(key)) { throw refusal }
        var check = try BodyCheck(options, maxSize: configuration.maxBlobSize)
        let contentType = options.contentType ?? BlobInfo.defaultContentType
        guard contentType.utf8.count <= Format.maxContentTypeLength else {
            throw StoreError.invalidKey.with(
                message: "content type is longer than \(Format.maxContentTypeLength) bytes")
        }

        var inline = ByteBufferAllocator().buffer(
            capacity: Int(min(Int64(configuration.inlineThreshold), options.expectedLength ?? 16 * 1024)))
        var spill: SpillWriter?
        do {
            var iterator = body.makeAsyncIterator()
            while true {
                let next: ByteBuffer?
                do {
                    next = try await iterator.next()
                } catch {
                    throw StoreError.incompleteBody.with(message: "the body ended early: \(error)")
                }
                guard let chunk = next else { break }
                try check.update(chunk)
                if spill == nil && inline.readableBytes + chunk.readableBytes <= configuration.inlineThreshold {
                    inline.writeImmutableBuffer(chunk)
                    continue
                }
                if spill == nil {
                    if !reserve.isHeld {
                        let reserve = self.reserve
                        guard try await ioPool.runIfActive({ reserve.tryAcquire() }) else { throw LogEngine.diskFull }
                    }
                    let id = nextSpillID.wrappingAdd(1, ordering: .relaxed).oldValue
                    let directory = blobsPath
                    let io = self.io
                    spill = try await ioPool.runIfActive {
                        try SpillWriter.create(directory: directory, id: id, io: io)
                    }
                    spill!.append(inline)
                    inline = ByteBuffer()
                }
                spill!.append(chunk)
                if spill!.pendingBytes >= configuration.spillWriteChunkSize {
                    let writer = spill!
                    try await ioPool.runIfActive { try writer.flush() }
                }
            }
            try check.finish()
            let digest = Digest128(bytes: check.md5Digest)
            var meta = PutMeta(
                size: check.count, modifiedMillis: LogEngine.nowMillis(), md5: digest, contentType: contentType)
            if let writer = spill {
                meta.spillID = writer.id
                meta.spillBlockSize = writer.blockSizeValue
                meta.spillTableCRC = try await ioPool.runIfActive { try writer.finish() }
            }
            let outcome = try await commit(
                key: key, mutation: .put(meta, data: spill == nil ? inline : nil),
                condition: options.condition)
            return WriteResult(created: outcome.previous == nil, info: outcome.current!.info)
        } catch {
            if let writer = spill {
                // Owned by this upload until committed: remove it. Blocking, so off the cooperative pool.
                _ = try? await ioPool.runIfActive { writer.abort() }
            }
            let failure = LogEngine.storeError(error)
            if failure == .insufficientStorage || failure == .io {
                logger.warning(
                    "write failed", metadata: ["blob.key": "\(key)", "error": "\(failure)", "bytes": "\(check.count)"])
            }
            throw failure
        }
    }

    /// Deletes the blob at `key` by committing a tombstone.
    ///
    /// - Durability: returns after the tombstone is fsynced; the replaced spill file, if any, is removed after that.
    /// - Errors: ``StoreError/notFound``, ``StoreError/preconditionFailed``, ``StoreError/insufficientStorage``,
    ///   ``StoreError/io``.
    public func delete(_ key: BlobKey, condition: WriteCondition) async throws -> BlobInfo {
        try checkWritable()
        do {
            let outcome = try await commit(key: key, mutation: .delete, condition: condition)
            return outcome.previous!.info
        } catch {
            throw LogEngine.storeError(error)
        }
    }

    func checkWritable() throws {
        try state.withLock { s in
            guard s.open else { throw StoreError.unavailable.with(message: "the engine is closed") }
            if let failure = s.writeFailure { throw failure }
        }
    }

    func lookup(_ key: BlobKey) -> IndexEntry? {
        state.withLock { $0.index[key] }
    }
}
