import CofferCore
import Synchronization

/// What a shared-volume gateway (``ShardedStore/Placement/shared``) knows of each name: whether it exists, the
/// version it acknowledged last, and which backends may hold the name in their own caches.
///
/// Backends that share one volume each keep a per-process view of it (the fileserver challenge's file servers cache
/// which names exist) and nothing orders two of them. The gateway is the single entry point, so what it acknowledged
/// is the truth, and this table lets it act on that:
///
/// - a name known **absent** is answered 404 without asking a backend (no backend's stale view can answer);
/// - a name known **present** has a length: a backend body of another length is never passed on, and a backend that
///   sends no Content-Length is held to it;
/// - **which backends know the name** (they wrote or read it): a DELETE goes to each of them, so none keeps a stale
///   view; a backend that missed a DELETE (down) stays recorded until the name is written again, and such an entry is
///   never evicted.
///
/// A name the table does not hold (never seen, evicted, or the gateway restarted) is *unknown*: reads ask a backend
/// and believe its length, and a DELETE goes to every backend. At most ``capacity`` names are held; the oldest
/// entries are evicted first (about 200 bytes each).
final class SharedNames: Sendable {
    enum State: Sendable, Hashable {
        /// The version this gateway last acknowledged or read.
        case present(BlobInfo)
        /// Deleted (or a backend said 404).
        case absent
        /// A write failed part-way: the backends' truncate-then-write may have left any prefix of it.
        case inDoubt
    }

    struct Entry: Sendable {
        var state: State
        /// Backends that may cache the name: for a present name, those that wrote or read it; for an absent one, those
        /// that missed its DELETE.
        var backends: Set<String>
        /// Whether ``backends`` is all of them: only once a DELETE reached every backend. Until then any backend
        /// may know the name from before this gateway saw it (before it started, or before the entry was evicted).
        var complete: Bool
        var stamp: UInt64
    }

    private struct Table {
        var entries: [BlobKey: Entry] = [:]
        /// Names in insertion order (with the stamp they had then), for eviction; stale pairs are skipped.
        var order: [(name: BlobKey, stamp: UInt64)] = []
        var head = 0
        var nextStamp: UInt64 = 0
    }

    let capacity: Int
    private let table = Mutex(Table())

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    /// The entry of `name`, or `nil` when unknown.
    func entry(_ name: String) -> Entry? {
        table.withLock { $0.entries[BlobKey(unchecked: name)] }
    }

    /// The name is stored as `info`, and `backend` knows it (a write acknowledged, or a read served).
    func recordPresent(_ name: String, _ info: BlobInfo, backend: String) {
        update(name) { entry in
            // Backends that knew the name before (or wrongly believed in it while it was absent) know it rightly now.
            var backends = entry?.backends ?? []
            backends.insert(backend)
            return Entry(state: .present(info), backends: backends, complete: entry?.complete ?? false, stamp: 0)
        }
    }

    /// A write through `backend` failed after it was sent: the name's bytes are in doubt.
    func recordDoubt(_ name: String, backend: String) {
        update(name) { entry in
            var backends = entry?.backends ?? []
            backends.insert(backend)
            return Entry(state: .inDoubt, backends: backends, complete: entry?.complete ?? false, stamp: 0)
        }
    }

    /// The name is gone. `missed` are backends that may still believe it exists (their DELETE failed); `complete`
    /// says whether the DELETE went to every backend that may have known the name.
    func recordAbsent(_ name: String, missed: Set<String>, complete: Bool) {
        update(name) { entry in
            let complete = complete || (entry?.complete ?? false)
            return Entry(
                state: .absent, backends: complete ? missed : missed.union(entry?.backends ?? []), complete: complete,
                stamp: 0)
        }
    }

    /// Names held now.
    var count: Int { table.withLock { $0.entries.count } }

    private func update(_ name: String, _ change: (Entry?) -> Entry) {
        let name = BlobKey(unchecked: name)
        table.withLock { table in
            let existing = table.entries[name]
            var entry = change(existing)
            if let existing {
                entry.stamp = existing.stamp
                table.entries[name] = entry
                return
            }
            table.nextStamp += 1
            entry.stamp = table.nextStamp
            table.entries[name] = entry
            table.order.append((name, entry.stamp))
            evict(&table)
        }
    }

    /// Drops the oldest entries over ``capacity``, but never an absent name that a backend may still believe in.
    private func evict(_ table: inout Table) {
        var budget = table.order.count - table.head
        while table.entries.count > capacity, table.head < table.order.count, budget > 0 {
            budget -= 1
            let (name, stamp) = table.order[table.head]
            table.head += 1
            guard let entry = table.entries[name], entry.stamp == stamp else { continue }
            if entry.state == .absent, !entry.backends.isEmpty {
                table.order.append((name, stamp))  // pinned: keep it, look again later
                continue
            }
            table.entries[name] = nil
        }
        if table.head > 1024, table.head * 2 > table.order.count {
            table.order.removeFirst(table.head)
            table.head = 0
        }
    }
}
