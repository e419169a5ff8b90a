import CofferCore
import NIOCore
import Synchronization

/// The gateway's optional read cache (`--cache-size`): whole small objects (up to ``maxObjectSize``), least recently
/// used first out once ``capacity`` bytes are held.
///
/// Consistency: the gateway drops a key when one of its own writes or deletes of the key starts and again when it
/// ends, and a read inserts what it read only if no write of the key overlapped the read (``KeyGenerations``). So
/// through one gateway, a read that starts after a write was acknowledged never gets an older version from the cache.
/// Writes made through *another* gateway, or straight to a backend, are not seen: such a gateway serves its cached
/// version until the entry is evicted. Run the cache only with one gateway per backend set, or accept reads that lag.
public final class GatewayCache: Sendable {
    /// Hit and occupancy counters.
    public struct Statistics: Sendable, Hashable {
        public var hits = 0
        public var misses = 0
        public var inserts = 0
        public var evictions = 0
        public var entries = 0
        public var bytes = 0
    }

    private struct Node {
        var key: String
        var info: BlobInfo
        var bytes: ByteBuffer
        var cost: Int
        var previous: Int
        var next: Int
    }

    /// A doubly linked list in an array (most recent at `head`), with a free list, and an index by key.
    private struct State {
        var nodes: [Node] = []
        var free: [Int] = []
        var index: [BlobKey: Int] = [:]
        var head = -1
        var tail = -1
        var statistics = Statistics()

        mutating func unlink(_ slot: Int) {
            let node = nodes[slot]
            if node.previous >= 0 { nodes[node.previous].next = node.next } else { head = node.next }
            if node.next >= 0 { nodes[node.next].previous = node.previous } else { tail = node.previous }
        }

        mutating func pushFront(_ slot: Int) {
            nodes[slot].previous = -1
            nodes[slot].next = head
            if head >= 0 { nodes[head].previous = slot }
            head = slot
            if tail < 0 { tail = slot }
        }

        mutating func remove(_ slot: Int) {
            unlink(slot)
            index[BlobKey(unchecked: nodes[slot].key)] = nil
            statistics.bytes -= nodes[slot].cost
            statistics.entries -= 1
            nodes[slot].bytes = ByteBuffer()
            nodes[slot].key = ""
            free.append(slot)
        }
    }

    private let state = Mutex(State())
    /// Bytes held at most (bodies plus a per-entry overhead).
    public let capacity: Int
    /// Larger objects are never cached.
    public let maxObjectSize: Int

    /// Bookkeeping bytes counted per entry on top of its body and key.
    static let entryOverhead = 160

    public init(capacity: Int, maxObjectSize: Int = 1 << 20) {
        self.capacity = max(0, capacity)
        self.maxObjectSize = max(0, min(maxObjectSize, capacity))
    }

    /// The cached version of `key`, which becomes the most recently used.
    public func lookup(_ key: String) -> (info: BlobInfo, bytes: ByteBuffer)? {
        state.withLock { state in
            guard let slot = state.index[BlobKey(unchecked: key)] else {
                state.statistics.misses += 1
                return nil
            }
            state.statistics.hits += 1
            if state.head != slot {
                state.unlink(slot)
                state.pushFront(slot)
            }
            return (state.nodes[slot].info, state.nodes[slot].bytes)
        }
    }

    /// Caches `bytes` (the whole object) as `key`'s version `info`, if it is small enough and `isCurrent()` holds.
    /// `isCurrent` runs under the cache's lock, so a concurrent ``invalidate(_:)`` either comes after the insert (and
    /// removes it) or makes `isCurrent` fail.
    func insert(_ key: String, info: BlobInfo, bytes: ByteBuffer, if isCurrent: () -> Bool) {
        guard bytes.readableBytes <= maxObjectSize, Int64(bytes.readableBytes) == info.size else { return }
        let cost = bytes.readableBytes + key.utf8.count + Self.entryOverhead
        guard cost <= capacity else { return }
        state.withLock { state in
            guard isCurrent() else { return }
            if let existing = state.index[BlobKey(unchecked: key)] { state.remove(existing) }
            while state.statistics.bytes + cost > capacity, state.tail >= 0 {
                state.remove(state.tail)
                state.statistics.evictions += 1
            }
            let node = Node(key: key, info: info, bytes: bytes, cost: cost, previous: -1, next: -1)
            let slot: Int
            if let reused = state.free.popLast() {
                state.nodes[reused] = node
                slot = reused
            } else {
                state.nodes.append(node)
                slot = state.nodes.count - 1
            }
            state.pushFront(slot)
            state.index[BlobKey(unchecked: key)] = slot
            state.statistics.bytes += cost
            state.statistics.entries += 1
            state.statistics.inserts += 1
        }
    }

    /// Drops `key`.
    public func invalidate(_ key: String) {
        state.withLock { state in
            if let slot = state.index[BlobKey(unchecked: key)] { state.remove(slot) }
        }
    }

    public var statistics: Statistics { state.withLock { $0.statistics } }
}
