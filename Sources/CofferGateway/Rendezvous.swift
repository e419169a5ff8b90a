#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Highest-random-weight (rendezvous) hashing: every key ranks every backend by a score computed from the pair
/// (backend id, key), and the highest scores own the key.
///
/// Adding a backend moves to it exactly the keys it now wins (about `1/(n+1)` of them) and moves no key between the
/// old backends; removing one moves only its own keys, each to that key's next-ranked backend. Weighted members get
/// shares proportional to their weights (score `-weight / ln(u)` with `u` the pair's hash mapped to `(0, 1)`, the
/// logarithmic method of Schindelhauer and Schomaker).
///
/// The hash is a fixed, seedless 64-bit mix (``Rendezvous/hash(_:seed:)``), so every gateway, on every platform and in
/// every run, ranks the same way: Swift's `Hasher` is seeded per process and must not be used here. It is not
/// resistant to chosen keys (a client could pick keys that all land on one backend), which costs balance, never
/// correctness.
public struct Rendezvous: Sendable {
    /// One backend in the ranking.
    public struct Member: Sendable, Hashable {
        public var id: String
        /// A relative share (> 0); 1 for an even split.
        public var weight: Double

        public init(id: String, weight: Double = 1) {
            self.id = id
            self.weight = weight
        }
    }

    public let members: [Member]
    /// `hash(id)` of each member, mixed with each key's hash.
    private let seeds: [UInt64]
    private let weights: [Double]
    private let uniform: Bool

    /// A ranking over `members`, in the order given (``rank(key:)`` returns indices into it). Weights that are not
    /// positive and finite count as 1.
    public init(members: [Member]) {
        self.members = members
        self.seeds = members.map { Self.hash(Array($0.id.utf8), seed: 0x636f_6666_6572_6964) }
        let weights = members.map { $0.weight > 0 && $0.weight.isFinite ? $0.weight : 1 }
        self.weights = weights
        self.uniform = weights.allSatisfy { $0 == weights.first }
    }

    /// Equal weights.
    public init(ids: [String]) {
        self.init(members: ids.map { Member(id: $0) })
    }

    /// Member indices from the best owner of `key` to the worst.
    public func rank(key: String) -> [Int] {
        let keyHash = Self.hash(Array(key.utf8), seed: 0)
        if uniform {
            // Equal weights: -w/ln(u) grows with u, so comparing the raw hashes gives the same order, exactly.
            var scored = seeds.enumerated().map { (index: $0.offset, score: Self.combine($0.element, keyHash)) }
            scored.sort { $0.score != $1.score ? $0.score > $1.score : $0.index < $1.index }
            return scored.map(\.index)
        }
        var scored = seeds.indices.map { (index: $0, score: score(member: $0, keyHash: keyHash)) }
        scored.sort { $0.score != $1.score ? $0.score > $1.score : $0.index < $1.index }
        return scored.map(\.index)
    }

    /// The best owner of `key`, or `nil` when there are no members.
    public func owner(of key: String) -> Int? {
        rank(key: key).first
    }

    /// The weighted score of member `index` for a key whose hash is `keyHash`.
    func score(member index: Int, keyHash: UInt64) -> Double {
        let mixed = Self.combine(seeds[index], keyHash)
        // 53 bits mapped into (0, 1): never 0 (ln would be -inf) and never 1 (ln would be 0).
        let unit = (Double(mixed >> 11) + 0.5) * 0x1p-53
        return -weights[index] / log(unit)
    }

    /// The pair hash: both halves avalanche into every output bit.
    static func combine(_ seed: UInt64, _ keyHash: UInt64) -> UInt64 {
        finalize(mum(seed ^ 0xa076_1d64_78bd_642f, keyHash ^ 0xe703_7ed1_a0b4_28db) ^ seed)
    }

    /// A wyhash-style 64-bit hash of `bytes`: 8-byte little-endian words folded with 128-bit multiplies, then a
    /// murmur3 finalizer. Fixed constants: the same on every machine and in every run.
    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        var state = seed ^ 0x8ebc_6af0_9c88_c6e3
        var index = 0
        let count = bytes.count
        while index < count {
            var word: UInt64 = 0
            let take = min(8, count - index)
            for offset in 0..<take { word |= UInt64(bytes[index + offset]) << (8 * UInt64(offset)) }
            state = mum(state ^ word ^ 0x5899_65cc_7537_4cc3, 0x1d8e_4e27_c47d_124f ^ UInt64(index))
            index += take
        }
        return finalize(mum(state ^ UInt64(count), 0xa076_1d64_78bd_642f))
    }

    /// The 128-bit product of `a` and `b`, folded to 64 bits.
    private static func mum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let product = a.multipliedFullWidth(by: b)
        return product.high ^ product.low
    }

    /// murmur3's fmix64.
    private static func finalize(_ value: UInt64) -> UInt64 {
        var h = value
        h ^= h >> 33
        h &*= 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        h &*= 0xc4ce_b9fe_1a85_ec53
        h ^= h >> 33
        return h
    }
}
