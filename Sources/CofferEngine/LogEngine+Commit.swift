import CofferCore
import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension LogEngine {
    /// Hands `mutation` to the group-commit writer and waits until it is durable (or refused).
    func commit(key: BlobKey, mutation: PendingWrite.Mutation, condition: WriteCondition) async throws -> CommitOutcome
    {
        try await withCheckedThrowingContinuation { continuation in
            let write = PendingWrite(key: key, mutation: mutation, condition: condition, continuation: continuation)
            if !queue.submit(write) {
                continuation.resume(throwing: StoreError.unavailable.with(message: "the engine is shutting down"))
            }
        }
    }

    /// The writer thread's loop: take a batch, write it with one pwrite, fdatasync once, then answer everyone.
    func runWriter() {
        while let batch = queue.nextBatch(maxBytes: configuration.maxBatchBytes) {
            commitBatch(batch)
        }
        do {
            try io.fdatasync(writer.active.fd)
        } catch {
            logger.error("final fdatasync failed", metadata: ["error": "\(error)"])
        }
    }

    private struct Staged {
        var write: PendingWrite
        var result: Result<CommitOutcome, StoreError>
    }

    /// Writes one batch. On success every write in it is durable and in the index before any is answered; on a
    /// failed write or fsync the segment is truncated back to where the batch began and every write in the batch
    /// fails. On a full disk, the writes that free space (deletes, relocations) are retried once without the space
    /// reserve (`isRetry`), and new versions fail with 507.
    func commitBatch(_ batch: [PendingWrite], isRetry: Bool = false) {
        if let failure = state.withLock({ $0.writeFailure }) {
            for write in batch { write.continuation.resume(throwing: failure) }
            return
        }
        var batch = batch
        if !isRetry && batch.contains(where: \.isPut) && !reserve.isHeld && !reserve.tryAcquire() {
            // The disk is full: only the writes that free space go ahead.
            for write in batch where write.isPut { write.continuation.resume(throwing: LogEngine.diskFull) }
            batch.removeAll { $0.isPut }
            if batch.isEmpty { return }
        }
        var view: [BlobKey: IndexEntry?] = state.withLock { s in
            var view: [BlobKey: IndexEntry?] = [:]
            for write in batch where view[write.key] == nil { view[write.key] = .some(s.index[write.key]) }
            return view
        }
        var staged: [Staged] = []
        staged.reserveCapacity(batch.count)
        var buffer = ByteBufferAllocator().buffer(capacity: batch.reduce(0) { $0 + $1.estimatedBytes })
        var obsoleteSpills: [UInt64] = []
        var hasSpill = false

        for write in batch {
            let previous = view[write.key] ?? nil
            if let refusal = IndexEntry.check(write.condition, current: previous) {
                staged.append(Staged(write: write, result: .failure(refusal)))
                continue
            }
            let sequence = writer.nextSequence
            let offset = Int64(buffer.writerIndex)  // relative to the batch; fixed up once the base is known
            var current: IndexEntry?
            switch write.mutation {
            case .put(let meta, let data):
                let kind: RecordKind = meta.spillID == 0 ? .putInline : .putSpill
                hasSpill = hasSpill || kind == .putSpill
                let length = LogRecord(sequence: sequence, kind: kind, key: write.key.rawValue, meta: meta, data: data)
                    .encode(into: &buffer)
                current = IndexEntry(sequence: sequence, segment: 0, offset: offset, length: length, meta: meta)
            case .delete:
                guard previous != nil else {
                    staged.append(Staged(write: write, result: .failure(.notFound)))
                    continue
                }
                LogRecord(sequence: sequence, kind: .delete, key: write.key.rawValue, meta: nil, data: nil)
                    .encode(into: &buffer)
            case .relocate(let raw, let relocated):
                let isTombstone =
                    raw.getInteger(at: raw.readerIndex + Format.recordKindOffset, as: UInt8.self)
                    == RecordKind.delete.rawValue
                let stillLive = isTombstone ? previous == nil : previous?.sequence == relocated
                guard stillLive else {
                    let unchanged = CommitOutcome(previous: previous, current: previous, applied: false)
                    staged.append(Staged(write: write, result: .success(unchanged)))
                    continue
                }
                buffer.writeImmutableBuffer(raw)
                if var moved = previous {
                    moved.segment = 0
                    moved.recordOffset = offset
                    current = moved
                }
                // Same record, same sequence number, same spill file: nothing becomes obsolete.
                view[write.key] = .some(current)
                staged.append(
                    Staged(write: write, result: .success(CommitOutcome(previous: previous, current: current))))
                continue
            }
            writer.nextSequence += 1
            if let previous, previous.isSpilled { obsoleteSpills.append(previous.spillID) }
            view[write.key] = .some(current)
            staged.append(Staged(write: write, result: .success(CommitOutcome(previous: previous, current: current))))
        }

        if buffer.readableBytes > 0 {
            do {
                try writeDurably(buffer, syncBlobs: hasSpill)
            } catch {
                let failure = LogEngine.storeError(error)
                logger.error(
                    "group commit failed; batch rolled back",
                    metadata: [
                        "segment.id": "\(writer.active.id)", "batch.writes": "\(batch.count)", "error": "\(error)",
                    ])
                if failure == .insufficientStorage { _ = reserve.release() }
                if failure == .insufficientStorage && !isRetry && batch.contains(where: { !$0.isPut }) {
                    // Give up the reserve so deletes and relocations fit; new versions fail with 507.
                    logger.warning("disk full: space reserve released for deletes and compaction")
                    for item in staged where item.write.isPut {
                        item.write.continuation.resume(throwing: LogEngine.diskFull)
                    }
                    commitBatch(batch.filter { !$0.isPut }, isRetry: true)
                    return
                }
                for item in staged { item.write.continuation.resume(throwing: failure) }
                return
            }
            let base = writer.end
            let segment = writer.active.id
            writer.end += Int64(buffer.readableBytes)
            for i in staged.indices {
                guard case .success(var outcome) = staged[i].result, outcome.applied, outcome.current != nil else {
                    continue
                }
                outcome.current!.recordOffset += base
                outcome.current!.segment = segment
                staged[i].result = .success(outcome)
            }
            state.withLock { s in
                for item in staged {
                    guard case .success(let outcome) = item.result, outcome.applied else { continue }
                    if var current = outcome.current {
                        current.contentType = s.contentTypes.intern(current.contentType)
                        s.index[item.write.key] = current
                    } else {
                        s.index.removeValue(forKey: item.write.key)
                    }
                }
            }
            // New small versions go to the read cache (deleted keys leave it); readers match it by sequence number.
            for item in staged {
                guard case .success(let outcome) = item.result, outcome.applied else { continue }
                switch item.write.mutation {
                case .put(_, let data?): cache.insert(item.write.key, sequence: outcome.current!.sequence, data: data)
                case .delete: cache.remove(item.write.key)
                default: break
                }
            }
            for id in obsoleteSpills {
                do {
                    try io.unlink(SpillReader.path(directory: blobsPath, id: id))
                } catch {
                    logger.warning(
                        "could not remove replaced spill file", metadata: ["spill.id": "\(id)", "error": "\(error)"])
                }
            }
        }
        for item in staged {
            item.write.continuation.resume(with: item.result.mapError { $0 as any Error })
        }
    }

    /// Appends `buffer` to the active segment (rotating first if it would grow too large) and fdatasyncs it.
    /// On failure, truncates back; if even that fails, refuses all later writes.
    private func writeDurably(_ buffer: ByteBuffer, syncBlobs: Bool) throws {
        if writer.end > Int64(Format.segmentHeaderSize)
            && writer.end + Int64(buffer.readableBytes) > configuration.segmentSize
        {
            try rotate()
        }
        if syncBlobs {
            try io.syncDirectory(blobsPath)
        }
        let fd = writer.active.fd
        do {
            try io.writeAll(fd, buffer, offset: writer.end)
            try io.fdatasync(fd)
        } catch {
            do {
                try io.ftruncate(fd, length: writer.end)
                try io.fdatasync(fd)
            } catch let truncateError {
                let failure = StoreError.io.with(
                    message: "the log could not be rolled back after a failed write; writes are disabled")
                state.withLock { $0.writeFailure = failure }
                logger.critical(
                    "rollback after failed write failed; refusing writes until restart",
                    metadata: ["segment.id": "\(writer.active.id)", "error": "\(truncateError)"])
            }
            throw error
        }
    }

    /// Seals the active segment and starts the next one: header written and fsynced, directory fsynced.
    private func rotate() throws {
        let id = writer.active.id + 1
        let path = segmentsPath + "/" + SegmentFile.fileName(id: id)
        let segment = try LogEngine.createSegment(id: id, path: path, io: io)
        do {
            try io.syncDirectory(segmentsPath)
        } catch {
            try? io.unlink(path)
            throw error
        }
        state.withLock { s in
            s.segments[id] = segment
            s.activeSegment = id
        }
        writer.active = segment
        writer.end = Int64(Format.segmentHeaderSize)
        logger.info("segment rotated", metadata: ["segment.id": "\(id)"])
    }

    /// Creates segment `id` at `path` with its header, fsynced (the caller fsyncs the directory).
    static func createSegment(id: UInt32, path: String, io: any FileIO) throws -> SegmentFile {
        let fd = try io.open(path, flags: O_RDWR | O_CREAT | O_EXCL, mode: 0o644)
        do {
            try io.writeAll(fd, SegmentFile.header(id: id, createdMillis: nowMillis()), offset: 0)
            try io.fdatasync(fd)
        } catch {
            try? io.close(fd)
            try? io.unlink(path)
            throw error
        }
        return SegmentFile(id: id, path: path, fd: fd, io: io)
    }
}
