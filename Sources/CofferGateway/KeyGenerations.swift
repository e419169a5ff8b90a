import CofferCore
import Synchronization

/// Write generations per key, striped: a write bumps its key's stripe when it starts and again when it ends. A reader
/// that noted the generation before reading knows, by comparing afterwards, whether a write may have overlapped its
/// read; then it neither caches what it read nor copies it to other replicas (it might be older than the write).
///
/// Keys share one of ``stripes`` counters, so a write to another key of the same stripe makes such a check fail too:
/// that only skips a cache insert or a repair (the next read does it), never lets a stale one through.
final class KeyGenerations: Sendable {
    static let stripes = 4096
    private let counters = Mutex<[UInt64]>(Array(repeating: 0, count: KeyGenerations.stripes))

    private func stripe(_ key: String) -> Int {
        Int(UInt(bitPattern: BlobKey(unchecked: key).hashValue) % UInt(Self.stripes))
    }

    /// The generation of `key` now.
    func current(_ key: String) -> UInt64 {
        let index = stripe(key)
        return counters.withLock { $0[index] }
    }

    /// Bumps `key`'s generation; returns the new value.
    @discardableResult
    func bump(_ key: String) -> UInt64 {
        let index = stripe(key)
        return counters.withLock { counters in
            counters[index] &+= 1
            return counters[index]
        }
    }
}
