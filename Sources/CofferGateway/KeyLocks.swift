import Synchronization

/// One async mutex per key, made on demand: writes, deletes and repairs of the same key run one at a time inside
/// this gateway (reads never wait). Waiters are served first in, first out. A key's entry exists only while the key is
/// locked, so memory follows the number of keys being written, not the number of keys.
final class KeyLocks: Sendable {
    private let waiters = Mutex<[String: [CheckedContinuation<Void, Never>]]>([:])

    /// Waits until `key` is free and takes it. Not cancellable: every holder finishes (its requests have deadlines).
    func lock(_ key: String) async {
        let acquired = waiters.withLock { table -> Bool in
            guard table[key] == nil else { return false }
            table[key] = []
            return true
        }
        if acquired { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquiredNow = waiters.withLock { table -> Bool in
                guard table[key] != nil else {
                    table[key] = []
                    return true
                }
                table[key]!.append(continuation)
                return false
            }
            if acquiredNow { continuation.resume() }
        }
    }

    /// Releases `key`, handing it to the longest waiter.
    func unlock(_ key: String) {
        let next = waiters.withLock { table -> CheckedContinuation<Void, Never>? in
            guard var queue = table[key] else { return nil }
            guard !queue.isEmpty else {
                table[key] = nil
                return nil
            }
            let first = queue.removeFirst()
            table[key] = queue
            return first
        }
        next?.resume()
    }

    /// Runs `body` holding `key`.
    func withLock<T>(_ key: String, _ body: () async throws -> T) async rethrows -> T {
        await lock(key)
        defer { unlock(key) }
        return try await body()
    }

    /// Keys locked now.
    var lockedCount: Int { waiters.withLock { $0.count } }
}
