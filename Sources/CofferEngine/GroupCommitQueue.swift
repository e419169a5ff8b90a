import CofferCore
import NIOConcurrencyHelpers
import NIOCore

/// One mutation waiting for the group-commit writer.
struct PendingWrite: Sendable {
    enum Mutation: Sendable {
        /// A new version; `data` holds the bytes when they are inline, `nil` when `meta.spillID` names a spill file.
        case put(PutMeta, data: ByteBuffer?)
        case delete
        /// Compaction: append this already-encoded, verified record again, unchanged (same sequence number), if it
        /// is still the live version of its key (for a tombstone: if the key is still absent). Otherwise skipped.
        case relocate(ByteBuffer, sequence: UInt64)
    }

    let key: BlobKey
    let mutation: Mutation
    let condition: WriteCondition
    let continuation: CheckedContinuation<CommitOutcome, any Error>

    /// `true` for a new version; deletes and relocations are the writes that free space.
    var isPut: Bool {
        if case .put = mutation { return true }
        return false
    }

    /// Bytes this write adds to a batch (for the batch-size cap).
    var estimatedBytes: Int {
        switch mutation {
        case .put(let meta, let data):
            return Format.recordHeaderSize + key.rawValue.utf8.count + meta.encodedSize + (data?.readableBytes ?? 0) + 4
        case .delete:
            return Format.recordHeaderSize + key.rawValue.utf8.count + 4
        case .relocate(let raw, _):
            return raw.readableBytes
        }
    }
}

/// What a committed write replaced and became.
struct CommitOutcome: Sendable {
    /// The version that was live before (nil when the key was free).
    var previous: IndexEntry?
    /// The version now live (nil after a delete).
    var current: IndexEntry?
    /// `false` when the write changed nothing (a relocation of a record that is no longer live).
    var applied = true
}

/// The queue between request tasks and the single writer thread: producers append and wake the writer; the writer
/// takes everything queued (up to a byte cap) as one batch.
final class GroupCommitQueue: @unchecked Sendable {
    // Guarded by `lock`; the condition value is 1 when the writer has something to do (work or closing).
    private let lock = ConditionLock<Int>(value: 0)
    private var pending: [PendingWrite] = []
    private var closing = false

    /// Appends `write`; returns `false` (and does not queue) once the queue is closed.
    func submit(_ write: PendingWrite) -> Bool {
        lock.lock()
        guard !closing else {
            lock.unlock()
            return false
        }
        pending.append(write)
        lock.unlock(withValue: 1)
        return true
    }

    /// Blocks until there is work; returns the next batch, or `nil` once closed and drained. Writer thread only.
    func nextBatch(maxBytes: Int) -> [PendingWrite]? {
        lock.lock(whenValue: 1)
        if pending.isEmpty {
            // Only reachable when closing.
            lock.unlock(withValue: 1)
            return nil
        }
        var bytes = 0
        var count = 0
        for write in pending {
            bytes += write.estimatedBytes
            count += 1
            if bytes >= maxBytes { break }
        }
        let batch = Array(pending.prefix(count))
        pending.removeFirst(count)
        lock.unlock(withValue: pending.isEmpty && !closing ? 0 : 1)
        return batch
    }

    /// Refuses new writes; the writer drains what is queued, then `nextBatch` returns `nil`.
    func close() {
        lock.lock()
        closing = true
        lock.unlock(withValue: 1)
    }
}
