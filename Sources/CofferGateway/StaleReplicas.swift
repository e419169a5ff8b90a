import CofferCore
import Synchronization

/// Backends known to hold an outdated state of a key (hinted handoff, in memory): a write or delete that reached
/// some replicas but not others (down, open breaker, failed) marks the others here. Reads skip a marked backend for
/// that key and repair it from a current replica (or delete its copy, for a deleted key), which clears the mark.
///
/// Without this a backend coming back with an old version would serve it, since reads trust the first replica that
/// has the key. The marks live in this gateway's memory only: they are lost on restart and unknown to other gateways,
/// and at most ``capacity`` keys are tracked (further marks are dropped and counted in ``dropped``).
final class StaleReplicas: Sendable {
    private struct State {
        var marks: [BlobKey: Set<String>] = [:]
        var dropped = 0
    }

    private let state = Mutex(State())
    let capacity: Int

    init(capacity: Int) {
        self.capacity = max(0, capacity)
    }

    /// Marks `backends` (ids) as outdated for `key`. Returns `false` when the table is full and the mark was dropped.
    @discardableResult
    func mark(_ name: String, backends: some Sequence<String>) -> Bool {
        let key = BlobKey(unchecked: name)
        let ids = Set(backends)
        guard !ids.isEmpty else { return true }
        return state.withLock { state in
            if state.marks[key] == nil, state.marks.count >= capacity {
                state.dropped += 1
                return false
            }
            state.marks[key, default: []].formUnion(ids)
            return true
        }
    }

    /// Clears the marks of `backends` for `key` (they now hold its current state).
    func clear(_ name: String, backends: some Sequence<String>) {
        let key = BlobKey(unchecked: name)
        state.withLock { state in
            guard var ids = state.marks[key] else { return }
            ids.subtract(backends)
            state.marks[key] = ids.isEmpty ? nil : ids
        }
    }

    /// The backends marked outdated for `key`.
    func marked(_ name: String) -> Set<String> {
        state.withLock { $0.marks[BlobKey(unchecked: name)] ?? [] }
    }

    /// Forgets the marks of backends that left the set.
    func retain(backends: Set<String>) {
        state.withLock { state in
            for (key, ids) in state.marks {
                let kept = ids.intersection(backends)
                state.marks[key] = kept.isEmpty ? nil : kept
            }
        }
    }

    /// Keys with marks, and marks dropped because the table was full.
    var counts: (keys: Int, dropped: Int) { state.withLock { ($0.marks.count, $0.dropped) } }
}
