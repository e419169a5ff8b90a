import CofferCore
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The gateway's ``BlobStore``: keys spread over backends by rendezvous hashing, replicated, read with fallback and
/// repaired in the background. The HTTP layer serves it exactly as it serves a node's engine.
///
/// ## Placement
///
/// Each key ranks the backends (``Rendezvous``, optionally weighted). A write goes to the first
/// ``Configuration/replicas`` *healthy* backends of that ranking (breaker closed) and is acknowledged when all of them
/// acknowledged it (write quorum = R; no sloppy success). Fewer than R healthy backends: 503 (`unavailable`).
///
/// A read asks the ranked backends in order (open breakers fail at once, costing nothing) and stops at the first
/// that has the key; when the first ones miss it, it goes on down the ranking (up to ``Configuration/fallbackDepth``
/// backends), so keys written before the backend set changed stay readable. It answers 404 only when every backend
/// asked said 404 and fewer than R could not answer; else 503 (the key may sit on a backend that is down).
///
/// When a read finds the key below a top-R backend that lacks it, a background repair copies it there (streamed
/// for large objects), under the key's lock and only if no write of the key happened since the read began.
///
/// With ``Placement/shared`` (backends that share one volume, such as the file servers of the fileserver challenge)
/// there is no hashing: every request goes to the least busy healthy backend, one replica, no fallback.
///
/// ## Writes
///
/// Bodies up to ``Configuration/bufferLimit`` are read whole, checked against `expectedLength`, `expectedMD5` and
/// `expectedSHA256`, then sent (and retried, and replayed to each replica) from memory: a body that fails its checks
/// is never sent. Larger bodies need a Content-Length and stream to all replicas at once through bounded pipes (the
/// slowest replica sets the pace; memory is constant); the last chunk is held back until the checks pass, so a
/// backend never receives a complete bad body and stores nothing. Conditional writes look the current version up
/// first (HEAD through the read path). Writes, deletes and repairs of one key are serialized inside this gateway,
/// which makes conditions atomic *within one gateway*; across gateways sharing backends they are not (check, then
/// write). The etag is the backend's (S3, Coffer: the MD5), else the MD5 the gateway computed on the way through.
/// An unconditional write is not looked up first (that would cost a round trip): it answers 201 (`created`).
///
/// A write that reaches some replicas but fails on others answers the failure (503/507), and the replicas it missed
/// are remembered (``StaleReplicas``) so reads skip and repair them: it behaves as a write that may or may not have
/// happened, never as a mix.
///
/// ## Deletes
///
/// The current version is looked up (for the condition and the answer), then every backend down to the fallback
/// depth is asked to delete (a copy may linger on a lower-ranked backend; it would come back through the read
/// fallback). 404 only when no backend had the key.
///
/// ## ETags of backends without one
///
/// A plain HTTP backend may send no `ETag`. Then objects up to ``Configuration/smallObjectLimit`` get the MD5 of
/// their bytes (a HEAD or a range read fetches the whole object to compute it); larger ones get a fresh random etag
/// per answer, which never matches a client's `If-Match` / `If-None-Match` (so the conservative answer: no 304, 412
/// on `If-Match`). Without a Last-Modified, the time of the read is used.
public final class ShardedStore: BlobStore, Service {
    /// How keys map to backends.
    public enum Placement: Sendable, Hashable {
        /// Rendezvous hashing, replicas, fallback reads and repair.
        case hashed
        /// All backends serve the same data (one shared volume): least-loaded, no replicas, no fallback.
        case shared
    }

    /// The store's settings.
    public struct Configuration: Sendable {
        /// Replicas per key (`--replicas`); effectively at most the number of backends.
        public var replicas: Int
        public var placement: Placement
        /// How many ranked backends a read may ask before answering 404 (`nil`: all). At least ``replicas``.
        public var fallbackDepth: Int?
        /// Bodies up to this size are buffered (retried, replayed); larger ones stream and need a Content-Length.
        public var bufferLimit: Int
        /// Whole-object reads up to this size are read into memory (cacheable; the backend's slot is freed at once).
        public var smallObjectLimit: Int
        /// Read cache size in bytes (`--cache-size`); 0 disables it.
        public var cacheSize: Int
        /// Largest object the cache keeps.
        public var cacheMaxObjectSize: Int
        /// Whether reads repair missing replicas.
        public var repair: Bool
        /// Whether a read that found the key on one replica checks (HEAD, in the background) the other top-R replicas
        /// it did not ask, and repairs those that lack it. Costs one HEAD per other replica per read (R ≥ 2 only).
        public var verifyReplicasOnRead: Bool
        /// Repairs running at once at most; more are skipped (a later read schedules them again).
        public var maxConcurrentRepairs: Int
        /// Keys whose outdated replicas are remembered at most (see ``StaleReplicas``).
        public var maxStaleMarks: Int
        /// How often every backend's health is checked.
        public var healthInterval: Duration
        /// Per-backend limits.
        public var gate: BackendGate.Configuration
        /// Rendezvous weights by backend id (default 1).
        public var weights: [String: Double]
        /// With ``Placement/shared``: names whose state the gateway remembers at most (``SharedNames``).
        public var maxTrackedNames: Int

        public init(
            replicas: Int = 1,
            placement: Placement = .hashed,
            fallbackDepth: Int? = nil,
            bufferLimit: Int = 8 << 20,
            smallObjectLimit: Int = 1 << 20,
            cacheSize: Int = 0,
            cacheMaxObjectSize: Int = 1 << 20,
            repair: Bool = true,
            verifyReplicasOnRead: Bool = true,
            maxConcurrentRepairs: Int = 8,
            maxStaleMarks: Int = 100_000,
            healthInterval: Duration = .seconds(2),
            gate: BackendGate.Configuration = BackendGate.Configuration(),
            weights: [String: Double] = [:],
            maxTrackedNames: Int = 250_000
        ) {
            self.replicas = max(1, replicas)
            self.placement = placement
            self.fallbackDepth = fallbackDepth
            self.bufferLimit = max(0, bufferLimit)
            self.smallObjectLimit = max(0, smallObjectLimit)
            self.cacheSize = max(0, cacheSize)
            self.cacheMaxObjectSize = cacheMaxObjectSize
            self.repair = repair
            self.verifyReplicasOnRead = verifyReplicasOnRead
            self.maxConcurrentRepairs = max(1, maxConcurrentRepairs)
            self.maxStaleMarks = maxStaleMarks
            self.healthInterval = healthInterval
            self.gate = gate
            self.weights = weights
            self.maxTrackedNames = max(1, maxTrackedNames)
        }
    }

    /// The order in which to ask backends about one key, and the shared-volume lease it holds.
    struct Route: Sendable {
        var gates: [BackendGate]
        var lease: String?
    }

    /// The backend set at one moment; replaced whole by ``update(backends:)``.
    struct Snapshot: Sendable {
        var gates: [BackendGate]
        var ring: Rendezvous
    }

    public let configuration: Configuration
    let logger: Logger
    let snapshotState: Mutex<Snapshot>
    let locks = KeyLocks()
    let generations = KeyGenerations()
    let stale: StaleReplicas
    let cache: GatewayCache?
    let repairs = Mutex<Set<BlobKey>>([])
    /// Requests this store has running per backend (shared placement only).
    let sharedLoads = Mutex<[String: Int]>([:])
    /// What the gateway knows of each name (shared placement only).
    let names: SharedNames?

    /// A store over `backends`, each behind a new ``BackendGate`` with ``Configuration/gate``.
    public convenience init(
        backends: [any Backend],
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "coffer.gateway")
    ) {
        let gates = backends.map { BackendGate($0, configuration: configuration.gate, logger: logger) }
        self.init(gates: gates, configuration: configuration, logger: logger)
    }

    /// A store over gates made by the caller (their own configurations).
    public init(
        gates: [BackendGate],
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "coffer.gateway")
    ) {
        self.configuration = configuration
        self.logger = logger
        self.stale = StaleReplicas(capacity: configuration.maxStaleMarks)
        self.cache =
            configuration.cacheSize > 0
            ? GatewayCache(capacity: configuration.cacheSize, maxObjectSize: configuration.cacheMaxObjectSize) : nil
        self.snapshotState = Mutex(Self.makeSnapshot(gates, weights: configuration.weights))
        self.names = configuration.placement == .shared ? SharedNames(capacity: configuration.maxTrackedNames) : nil
    }

    private static func makeSnapshot(_ gates: [BackendGate], weights: [String: Double]) -> Snapshot {
        var seen = Set<String>()
        let unique = gates.filter { seen.insert($0.id).inserted }
        return Snapshot(
            gates: unique, ring: Rendezvous(members: unique.map { .init(id: $0.id, weight: weights[$0.id] ?? 1) }))
    }

    /// Whether `new` reaches the same target as `old` in the same way. Ids carry no credentials, so an S3 node
    /// recreated at the same address with new keys has the same id: its gate must be replaced, or requests would keep
    /// signing with the old keys.
    static func sameTarget(_ old: any Backend, _ new: any Backend) -> Bool {
        if let old = old as? S3Backend, let new = new as? S3Backend { return old.endpoint == new.endpoint }
        return true
    }

    /// Replaces the backend set (discovery). Backends that stay (same ``Backend/id`` and, for S3, the same credentials) keep their gate: its queue,
    /// breaker and counters. Requests already running finish on the set they started with.
    public func update(backends: [any Backend]) {
        let (added, removed): ([String], [String]) = snapshotState.withLock { snapshot in
            let old = Dictionary(snapshot.gates.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            let gates = backends.map { backend in
                if let gate = old[backend.id], Self.sameTarget(gate.backend, backend) { return gate }
                return BackendGate(backend, configuration: configuration.gate, logger: logger)
            }
            snapshot = Self.makeSnapshot(gates, weights: configuration.weights)
            let now = Set(snapshot.gates.map(\.id))
            return (now.subtracting(old.keys).sorted(), Set(old.keys).subtracting(now).sorted())
        }
        stale.retain(backends: Set(gates.map(\.id)))
        if !added.isEmpty || !removed.isEmpty {
            logger.info(
                "backend set changed",
                metadata: ["added": "\(added)", "removed": "\(removed)", "backends": "\(gates.count)"])
        }
    }

    /// The gates of the current set.
    public var gates: [BackendGate] { snapshotState.withLock { $0.gates } }

    var snapshot: Snapshot { snapshotState.withLock { $0 } }

    /// Replicas a key gets in `snapshot`.
    func replicaCount(_ snapshot: Snapshot) -> Int {
        configuration.placement == .shared ? 1 : max(1, min(configuration.replicas, snapshot.gates.count))
    }

    /// The backends in the order to ask for `key`: its ranking (hashed), or (shared) the healthy ones first, then
    /// those that already know the name (``SharedNames``) while they have a free slot, then the least busy. With a
    /// shared volume the first one is leased (counted busy) until ``release(_:)``, so that concurrent requests spread
    /// at once rather than all seeing the same idle backend. Keeping a name to the backends that know it keeps the
    /// set a DELETE must reach small.
    func route(_ key: String, in snapshot: Snapshot) -> Route {
        let order = snapshot.ring.rank(key: key).map { snapshot.gates[$0] }
        guard configuration.placement == .shared, !order.isEmpty else { return Route(gates: order, lease: nil) }
        let healthy = order.map(\.isHealthy)
        let knowing = names?.entry(key)?.backends ?? []
        let cap = configuration.gate.maxConcurrentRequests
        return sharedLoads.withLock { loads in
            let load = order.map { loads[$0.id] ?? 0 }
            let preferred = order.indices.map { knowing.contains(order[$0].id) && load[$0] < cap }
            let indices = order.indices.sorted { lhs, rhs in
                if healthy[lhs] != healthy[rhs] { return healthy[lhs] }
                if preferred[lhs] != preferred[rhs] { return preferred[lhs] }
                let (left, right) = (load[lhs], load[rhs])
                return left != right ? left < right : lhs < rhs
            }
            let sorted = indices.map { order[$0] }
            loads[sorted[0].id, default: 0] += 1
            return Route(gates: sorted, lease: sorted[0].id)
        }
    }

    /// Ends a route's lease.
    func release(_ route: Route) {
        guard let lease = route.lease else { return }
        sharedLoads.withLock { loads in
            loads[lease] = (loads[lease] ?? 1) > 1 ? loads[lease]! - 1 : nil
        }
    }

    /// How many ranked backends a read or delete may ask.
    func depth(_ snapshot: Snapshot) -> Int {
        let count = snapshot.gates.count
        switch configuration.placement {
        case .shared: return count
        case .hashed: return min(count, max(replicaCount(snapshot), configuration.fallbackDepth ?? count))
        }
    }

    /// Checks every backend's health every ``Configuration/healthInterval`` until cancelled or a graceful shutdown
    /// (a `Service`: run it next to the HTTP server). Without it, open breakers still let a trial call through after
    /// their cooldown.
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.checkHealth()
                do {
                    try await Task.sleep(for: self.configuration.healthInterval)
                } catch {
                    return
                }
            }
        }
    }

    /// Probes every backend once, concurrently.
    public func checkHealth() async {
        let gates = self.gates
        await withTaskGroup(of: Void.self) { group in
            for gate in gates { group.addTask { await gate.checkHealth() } }
        }
    }

    /// Maps a backend failure to the store's error.
    static func storeError(_ error: any Error) -> any Error {
        switch error {
        case let error as BackendError:
            switch error.kind {
            case .notFound: return StoreError.notFound
            case .throttled: return StoreError.busy.with(message: "a backend is throttling: \(error.code)")
            case .unavailable: return StoreError.unavailable.with(message: "a backend is unavailable: \(error.code)")
            case .insufficientStorage: return StoreError.insufficientStorage
            case .rejected, .failed, .invalidResponse:
                let status = error.status.map { "HTTP \($0)" } ?? "an unusable answer"
                return StoreError.badGateway.with(
                    message: "backend \(error.backend ?? "?") answered \(status) (\(error.code)): \(error.message)")
            case .rangeNotSatisfiable:
                return StoreError.io.with(message: "a backend refused the request: \(error.code)")
            }
        case is StoreError, is CancellationError: return error
        default: return StoreError.io.with(message: "backend request failed: \(type(of: error))")
        }
    }

    /// The first error worth answering among `errors`: a client's own fault first, then full, busy, unavailable.
    static func worst(_ errors: [any Error]) -> any Error {
        let mapped = errors.map(storeError)
        let order: [StoreError] = [
            .incompleteBody, .digestMismatch, .tooLarge, .insufficientStorage, .badGateway, .io, .busy, .unavailable,
        ]
        for code in order {
            if let found = mapped.first(where: { ($0 as? StoreError) == code }) { return found }
        }
        return mapped.first ?? StoreError.unavailable
    }
}
