import CofferCore
import NIOCore
import Synchronization

/// The bytes of recently written or read small blobs, so the HTTP layer can answer them on its event loop without a
/// hop to the I/O threads. Entries are keyed by key and sequence number: an entry for an older version is never
/// served (the caller looks the sequence up in the index first). First in, first out, within a byte budget.
final class ReadCache: Sendable {
    private struct State {
        var entries: [BlobKey: (sequence: UInt64, data: ByteBuffer, stamp: UInt64)] = [:]
        /// Insertion order; an element whose stamp no longer matches its entry is stale and skipped.
        var order: [(key: BlobKey, stamp: UInt64)] = []
        var head = 0
        var bytes = 0
        var nextStamp: UInt64 = 0
    }

    let budget: Int
    let maxBlobBytes: Int
    private let state = Mutex(State())

    init(budget: Int, maxBlobBytes: Int) {
        self.budget = budget
        self.maxBlobBytes = maxBlobBytes
    }

    /// The bytes of version `sequence` of `key`, if cached.
    func lookup(_ key: BlobKey, sequence: UInt64) -> ByteBuffer? {
        state.withLock { s in
            guard let entry = s.entries[key], entry.sequence == sequence else { return nil }
            return entry.data
        }
    }

    /// Keeps `data` (all bytes of version `sequence` of `key`) if it is small enough; replaces an older version.
    func insert(_ key: BlobKey, sequence: UInt64, data: ByteBuffer) {
        let size = data.readableBytes + key.rawValue.utf8.count
        guard budget > 0, data.readableBytes <= maxBlobBytes, size <= budget else { return }
        state.withLock { s in
            if let old = s.entries[key] {
                guard old.sequence < sequence else { return }
                s.bytes -= old.data.readableBytes + key.rawValue.utf8.count
            }
            s.nextStamp += 1
            s.entries[key] = (sequence, data, s.nextStamp)
            s.order.append((key, s.nextStamp))
            s.bytes += size
            while s.bytes > budget, s.head < s.order.count {
                let (victim, stamp) = s.order[s.head]
                s.head += 1
                if let entry = s.entries[victim], entry.stamp == stamp {
                    s.entries.removeValue(forKey: victim)
                    s.bytes -= entry.data.readableBytes + victim.rawValue.utf8.count
                }
            }
            if s.head > 1024 && s.head * 2 > s.order.count {
                s.order.removeFirst(s.head)
                s.head = 0
            }
        }
    }

    /// Forgets `key` (after a delete).
    func remove(_ key: BlobKey) {
        state.withLock { s in
            if let old = s.entries.removeValue(forKey: key) {
                s.bytes -= old.data.readableBytes + key.rawValue.utf8.count
            }
        }
    }

    /// Forgets everything (at close).
    func removeAll() {
        state.withLock { $0 = State() }
    }
}
