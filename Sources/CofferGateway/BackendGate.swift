import CofferCore
import Logging
import NIOCore
import Synchronization

/// Protects one ``Backend``: a cap on concurrent requests with a queue, retries of throttled requests with backoff,
/// and a circuit breaker fed by failures and by health checks.
///
/// - **Cap.** At most ``Configuration/maxConcurrentRequests`` calls are in flight; further calls wait in line (first
///   in, first out) and never fail for lack of a slot. A ``get(_:range:)`` keeps its slot until its body has been
///   read to the end, failed, or been dropped.
/// - **Throttling.** A `.throttled` answer (429, 503, S3 `SlowDown`) is retried after an exponential backoff with
///   jitter (at least the backend's `Retry-After`), holding the slot, until ``Configuration/throttleDeadline`` from
///   the first attempt; then the call fails with ``StoreError/busy``, which the HTTP layer answers with 503 and
///   `Retry-After`. Only replayable calls are retried: a streamed `put` is sent once and fails with `.busy` at once.
/// - **Circuit breaker.** ``Configuration/failureThreshold`` consecutive `.unavailable` failures open the breaker:
///   every call then fails at once with ``StoreError/unavailable`` (no latency, no request). After
///   ``Configuration/openCooldown`` one call (a real one, or the health check's probe) is let through as a trial:
///   success closes the breaker, failure opens it again. Any answer from the backend, even an error status, counts as
///   success; only `.unavailable` (no answer: refused, reset, timed out) counts as failure. An answer about one
///   request (a 4xx or 5xx status, a body of the wrong length) or a failure of the caller's own (its upload body
///   broke, it went away) never counts against the backend.
/// - **Health.** ``checkHealth()`` probes the backend when a slot is free (never queueing, never over the cap); the
///   store calls it on every gate at an interval.
///
/// Errors of the backend pass through as ``BackendError`` (except `.throttled`, which becomes `.busy`).
public final class BackendGate: Sendable {
    /// The gate's limits.
    public struct Configuration: Sendable, Hashable {
        /// Concurrent calls at most (`--max-conns-per-backend`).
        public var maxConcurrentRequests: Int
        /// How long a throttled call is retried, from its first attempt.
        public var throttleDeadline: Duration
        /// The first retry's backoff; each further one doubles, up to ``maxBackoff``. Jitter: a random half.
        public var initialBackoff: Duration
        public var maxBackoff: Duration
        /// Consecutive `.unavailable` failures that open the breaker.
        public var failureThreshold: Int
        /// How long an open breaker fails every call before it lets one through.
        public var openCooldown: Duration
        /// How long a health probe may take before it counts as a failure.
        public var probeTimeout: Duration

        public init(
            maxConcurrentRequests: Int = 10,
            throttleDeadline: Duration = .seconds(10),
            initialBackoff: Duration = .milliseconds(50),
            maxBackoff: Duration = .seconds(1),
            failureThreshold: Int = 3,
            openCooldown: Duration = .seconds(2),
            probeTimeout: Duration = .seconds(2)
        ) {
            self.maxConcurrentRequests = max(1, maxConcurrentRequests)
            self.throttleDeadline = throttleDeadline
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
            self.failureThreshold = max(1, failureThreshold)
            self.openCooldown = openCooldown
            self.probeTimeout = probeTimeout
        }
    }

    /// Counters since the gate was made, and the current occupancy.
    public struct Metrics: Sendable, Hashable {
        /// Calls made (fast failures included).
        public var requests = 0
        /// Attempts repeated after a throttled answer.
        public var retries = 0
        /// Throttled answers received.
        public var throttled = 0
        /// Calls that failed with ``StoreError/busy`` (the throttle deadline passed).
        public var busy = 0
        /// `.unavailable` failures (no answer).
        public var unavailable = 0
        /// Times the breaker opened.
        public var breakerOpens = 0
        /// Calls refused at once by the open breaker.
        public var fastFailures = 0
        /// Health probes sent, and those that failed.
        public var probes = 0
        public var probeFailures = 0
        /// Calls holding a slot now, waiting for one now, and the most ever in flight.
        public var inFlight = 0
        public var waiting = 0
        public var maxInFlight = 0
    }

    public let backend: any Backend
    public let configuration: Configuration
    let logger: Logger
    let slots: AsyncSemaphore
    let breaker: Mutex<Breaker>
    let counters = Mutex(Metrics())

    /// - Parameter logger: breaker transitions are logged (warning when it opens, info when it closes) with the
    ///   `backend` metadata.
    public init(
        _ backend: any Backend,
        configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "coffer.gateway.gate")
    ) {
        self.backend = backend
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "backend"] = "\(backend.id)"
        self.logger = logger
        self.slots = AsyncSemaphore(permits: configuration.maxConcurrentRequests)
        self.breaker = Mutex(Breaker())
    }

    /// The backend's id.
    public var id: String { backend.id }

    /// Whether the breaker is closed (the backend answered lately). Writes go to healthy backends only.
    public var isHealthy: Bool { breaker.withLock { $0.phase == .closed } }

    /// Calls in flight plus calls waiting: how busy the backend is through this gate.
    public var load: Int { slots.inUse + slots.waiting }

    /// A snapshot of the counters.
    public var metrics: Metrics {
        var metrics = counters.withLock { $0 }
        metrics.inFlight = slots.inUse
        metrics.waiting = slots.waiting
        return metrics
    }

    /// ``Backend/head(_:)`` through the gate.
    ///
    /// - Errors: ``BackendError``; ``StoreError/busy``; ``StoreError/unavailable`` while the breaker is open.
    public func head(_ key: String) async throws -> BackendObject {
        try await call(replayable: true) { try await self.backend.head(key) }
    }

    /// ``Backend/get(_:range:)`` through the gate. The slot is held until the body ends, fails or is dropped.
    ///
    /// - Errors: ``BackendError``; ``StoreError/busy``; ``StoreError/unavailable`` while the breaker is open.
    public func get(_ key: String, range: Range<Int64>?, expectedSize: Int64? = nil) async throws -> BackendGet {
        var got = try await call(replayable: true, keepSlot: true) {
            try await self.backend.get(key, range: range, expectedSize: expectedSize)
        }
        got.body = guarded(got.body)
        return got
    }

    /// ``Backend/put(_:body:contentType:)`` through the gate; a `.stream` body is never retried.
    ///
    /// - Durability: the backend's, once it answered 2xx.
    /// - Errors: ``BackendError``; ``StoreError/busy``; ``StoreError/unavailable`` while the breaker is open; a
    ///   streamed body's own error.
    public func put(_ key: String, body: BackendBody, contentType: String?) async throws -> BackendObject {
        let replayable = if case .buffer = body { true } else { false }
        return try await call(replayable: replayable) {
            try await self.backend.put(key, body: body, contentType: contentType)
        }
    }

    /// ``Backend/delete(_:)`` through the gate.
    ///
    /// - Durability: the backend's, once it answered 2xx.
    /// - Errors: ``BackendError``; ``StoreError/busy``; ``StoreError/unavailable`` while the breaker is open.
    public func delete(_ key: String) async throws {
        try await call(replayable: true) { try await self.backend.delete(key) }
    }

    /// Runs `operation` in a slot, with the breaker's admission, throttling retries and failure accounting.
    /// With `keepSlot`, a successful call returns still holding its slot (the caller releases it).
    func call<T: Sendable>(
        replayable: Bool,
        keepSlot: Bool = false,
        _ operation: @Sendable () async throws -> T
    ) async throws -> T {
        counters.withLock { $0.requests += 1 }
        let isTrial = try admit()
        do {
            try await slots.acquire()
        } catch {
            if isTrial { abandonTrial() }
            throw error
        }
        // The breaker may have opened while this call waited in line: fail fast rather than queue on a dead backend.
        if !isTrial, !breaker.withLock({ $0.phase == .closed }) {
            slots.release()
            counters.withLock { $0.fastFailures += 1 }
            throw StoreError.unavailable.with(message: "backend \(id) is down (circuit open)")
        }
        counters.withLock { $0.maxInFlight = max($0.maxInFlight, slots.inUse) }
        let clock = ContinuousClock()
        let deadline = clock.now + configuration.throttleDeadline
        var attempt = 0
        while true {
            do {
                let value = try await operation()
                recordAnswer()
                if !keepSlot { slots.release() }
                return value
            } catch var error as BackendError {
                if error.backend == nil { error.backend = id }
                guard error.kind == .throttled else {
                    if error.isBackendFailure { recordFailure(error) } else { recordAnswer() }
                    slots.release()
                    throw error
                }
                recordAnswer()
                counters.withLock { $0.throttled += 1 }
                let delay = backoff(attempt: attempt, retryAfterSeconds: error.retryAfterSeconds)
                guard replayable, clock.now + delay < deadline else {
                    slots.release()
                    counters.withLock { $0.busy += 1 }
                    throw StoreError.busy.with(
                        message: "\(id) is throttling requests" + (replayable ? " (retried \(attempt) times)" : ""))
                }
                do {
                    try await Task.sleep(for: delay)
                } catch {
                    slots.release()
                    throw error
                }
                attempt += 1
                counters.withLock { $0.retries += 1 }
            } catch {
                // Not the backend's verdict (the caller's body failed, or the task was cancelled).
                if isTrial { abandonTrial() }
                slots.release()
                throw error
            }
        }
    }

    /// The pause before retry `attempt + 1`: exponential, half of it random, at least `Retry-After` when given.
    func backoff(attempt: Int, retryAfterSeconds: Int?) -> Duration {
        let base = configuration.initialBackoff * (1 << min(attempt, 20))
        let capped = min(base, configuration.maxBackoff)
        let half = capped / 2
        let jitter = Duration.nanoseconds(Int64.random(in: 0...max(0, half.nanosecondsApproximately)))
        let backoff = half + jitter
        guard let retryAfterSeconds, retryAfterSeconds > 0 else { return backoff }
        return max(backoff, .seconds(retryAfterSeconds))
    }

    /// A body that returns the slot when it ends, fails, or is dropped; a failure that says the backend is down
    /// counts against it.
    private func guarded(_ body: ByteStream) -> ByteStream {
        let holder = SlotHolder { [slots] in slots.release() }
        return body.releasing(holder) { [self] error in
            guard var error = error as? BackendError else { return error }
            if error.backend == nil { error.backend = id }
            if error.isBackendFailure { recordFailure(error) }
            return error
        }
    }
}

extension Duration {
    /// Nanoseconds, saturating.
    var nanosecondsApproximately: Int64 {
        let (seconds, attoseconds) = components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        return overflow ? Int64.max : product &+ attoseconds / 1_000_000_000
    }
}

/// Releases a slot once: explicitly, or when the last reference goes (a body dropped unread).
final class SlotHolder: Sendable {
    private let released = Atomic<Bool>(false)
    private let onRelease: @Sendable () -> Void

    init(_ onRelease: @escaping @Sendable () -> Void) {
        self.onRelease = onRelease
    }

    func release() {
        if !released.exchange(true, ordering: .acquiringAndReleasing) { onRelease() }
    }

    deinit { release() }
}

/// Iterates a ``ByteStream`` from a `Sendable` closure.
///
/// `@unchecked Sendable`: only the single consumer of the wrapping stream calls ``next()``, one call at a time.
final class StreamCursor: @unchecked Sendable {
    private var iterator: ByteStream.AsyncIterator

    init(_ iterator: ByteStream.AsyncIterator) {
        self.iterator = iterator
    }

    func next() async throws -> ByteBuffer? {
        var current = iterator
        defer { iterator = current }
        return try await current.next()
    }
}
