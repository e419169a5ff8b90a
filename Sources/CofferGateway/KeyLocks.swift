import CofferCore
import Synchronization

/// A readers-writer lock per key, made on demand and fair: holders are granted strictly in arrival order, so a
/// read that arrives after a write waits for that write, and a write waits for the reads before it (none overtakes,
/// none starves). Reads share the key with the reads next to them in line; writes, deletes and repairs hold it alone.
///
/// Names are compared by their bytes (``BlobKey``). A key's entry exists only while the key is held or awaited, so memory follows the keys in use, not all keys.
final class KeyLocks: Sendable {
    private struct Waiter {
        var exclusive: Bool
        var continuation: CheckedContinuation<Void, Never>
    }

    private struct Entry {
        var readers = 0
        var writer = false
        var queue: [Waiter] = []

        /// Whether a request of this kind may take the key now (nobody waits before it).
        func admits(exclusive: Bool) -> Bool {
            queue.isEmpty && !writer && (!exclusive || readers == 0)
        }

        mutating func take(exclusive: Bool) {
            if exclusive { writer = true } else { readers += 1 }
        }

        var isIdle: Bool { readers == 0 && !writer && queue.isEmpty }
    }

    private let table = Mutex<[BlobKey: Entry]>([:])

    /// Waits until `key` can be taken (shared, or `exclusive`) and takes it. Not cancellable: every holder finishes
    /// (its requests have deadlines).
    func lock(_ name: String, exclusive: Bool = true) async {
        let key = BlobKey(unchecked: name)
        let acquired = table.withLock { table -> Bool in
            var entry = table[key] ?? Entry()
            guard entry.admits(exclusive: exclusive) else { return false }
            entry.take(exclusive: exclusive)
            table[key] = entry
            return true
        }
        if acquired { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquiredNow = table.withLock { table -> Bool in
                var entry = table[key] ?? Entry()
                if entry.admits(exclusive: exclusive) {
                    entry.take(exclusive: exclusive)
                    table[key] = entry
                    return true
                }
                entry.queue.append(Waiter(exclusive: exclusive, continuation: continuation))
                table[key] = entry
                return false
            }
            if acquiredNow { continuation.resume() }
        }
    }

    /// Releases `key` (taken with the same `exclusive`), handing it to the waiters at the front of the line: one
    /// writer, or every reader up to the next writer.
    func unlock(_ name: String, exclusive: Bool = true) {
        let key = BlobKey(unchecked: name)
        let granted = table.withLock { table -> [CheckedContinuation<Void, Never>] in
            guard var entry = table[key] else {
                preconditionFailure("KeyLocks.unlock of a key that is not locked")
            }
            if exclusive {
                precondition(entry.writer, "KeyLocks.unlock(exclusive: true) without the exclusive hold")
                entry.writer = false
            } else {
                precondition(entry.readers > 0, "KeyLocks.unlock(exclusive: false) without a shared hold")
                entry.readers -= 1
            }
            var granted: [CheckedContinuation<Void, Never>] = []
            var taken = 0
            for waiter in entry.queue {
                if waiter.exclusive {
                    guard !entry.writer, entry.readers == 0 else { break }
                    entry.writer = true
                    granted.append(waiter.continuation)
                    taken += 1
                    break
                }
                guard !entry.writer else { break }
                entry.readers += 1
                granted.append(waiter.continuation)
                taken += 1
            }
            entry.queue.removeFirst(taken)
            table[key] = entry.isIdle ? nil : entry
            return granted
        }
        for continuation in granted { continuation.resume() }
    }

    /// Runs `body` holding `key` (shared, or `exclusive`).
    func withLock<T>(_ key: String, exclusive: Bool = true, _ body: () async throws -> T) async rethrows -> T {
        await lock(key, exclusive: exclusive)
        defer { unlock(key, exclusive: exclusive) }
        return try await body()
    }
}
