import CofferCore
import Logging

// The circuit breaker and the health probe.
extension BackendGate {
    /// The breaker's state.
    struct Breaker: Sendable {
        enum Phase: Sendable, Hashable {
            /// Calls go through.
            case closed
            /// Calls fail at once; after the cooldown the next call is a trial.
            case open(since: ContinuousClock.Instant)
            /// One trial call is in flight; others fail at once.
            case halfOpen
        }

        var phase = Phase.closed
        var consecutiveFailures = 0
    }

    /// Lets a call through, or fails it at once while the breaker is open. Returns whether the call is the trial that
    /// decides whether the breaker closes.
    ///
    /// - Errors: ``StoreError/unavailable`` while the breaker is open (or a trial is in flight).
    func admit() throws -> Bool {
        let cooldown = configuration.openCooldown
        let verdict: Bool? = breaker.withLock { breaker in
            switch breaker.phase {
            case .closed: return false
            case .open(let since) where ContinuousClock.now - since >= cooldown:
                breaker.phase = .halfOpen
                return true
            case .open, .halfOpen: return nil
            }
        }
        guard let verdict else {
            counters.withLock { $0.fastFailures += 1 }
            throw StoreError.unavailable.with(message: "backend \(id) is down (circuit open)")
        }
        return verdict
    }

    /// A trial ended without the backend's verdict (the caller gave up): the next call may try again at once.
    func abandonTrial() {
        let cooldown = configuration.openCooldown
        breaker.withLock { breaker in
            if breaker.phase == .halfOpen { breaker.phase = .open(since: ContinuousClock.now - cooldown) }
        }
    }

    /// The backend answered (whatever the status): the failure streak ends and an open breaker closes.
    func recordAnswer() {
        let closed = breaker.withLock { breaker -> Bool in
            breaker.consecutiveFailures = 0
            guard breaker.phase != .closed else { return false }
            breaker.phase = .closed
            return true
        }
        if closed { logger.info("backend answers again: circuit closed") }
    }

    /// The backend did not answer: one more in the streak; the breaker opens at the threshold,
    /// and a failed trial opens it again.
    func recordFailure(_ error: any Error) {
        let threshold = configuration.failureThreshold
        let opened = breaker.withLock { breaker -> Bool in
            breaker.consecutiveFailures += 1
            switch breaker.phase {
            case .closed where breaker.consecutiveFailures >= threshold,
                .halfOpen:
                let wasClosed = breaker.phase == .closed
                breaker.phase = .open(since: ContinuousClock.now)
                return wasClosed
            case .closed, .open:
                return false
            }
        }
        counters.withLock {
            $0.unavailable += 1
            if opened { $0.breakerOpens += 1 }
        }
        if opened {
            logger.warning(
                "backend unavailable: circuit open",
                metadata: ["failures": "\(threshold)", "error": "\(error)"])
        }
    }

    /// Sends one probe when a slot is free right now (a busy backend is judged by its real traffic, and the probe
    /// never exceeds the cap): success closes an open breaker, failure counts like a failed call. An open breaker is
    /// probed whatever its cooldown; a breaker with a trial in flight is left alone.
    ///
    /// Returns whether the breaker is closed afterwards.
    @discardableResult
    public func checkHealth() async -> Bool {
        let isOpen: Bool? = breaker.withLock { breaker in
            switch breaker.phase {
            case .closed: return false
            case .open: return true
            case .halfOpen: return nil
            }
        }
        guard let isOpen else { return false }
        guard slots.tryAcquire() else { return !isOpen }
        defer { slots.release() }
        if isOpen {
            // Take the trial, unless a real call took it meanwhile.
            let took = breaker.withLock { breaker -> Bool in
                guard case .open = breaker.phase else { return false }
                breaker.phase = .halfOpen
                return true
            }
            guard took else { return isHealthy }
        }
        counters.withLock { $0.probes += 1 }
        do {
            try await withProbeDeadline(configuration.probeTimeout) { try await self.backend.probe() }
            recordAnswer()
        } catch let error as BackendError where !error.isBackendFailure {
            recordAnswer()  // an answer, if not the one hoped for (say, 403): the backend is up
        } catch {
            counters.withLock { $0.probeFailures += 1 }
            recordFailure(error)  // a failed trial opens the breaker again
        }
        return isHealthy
    }
}

/// Runs `operation`, failing with ``BackendError`` `.unavailable` (code `ProbeTimeout`) if it takes longer than
/// `limit`; the operation is cancelled then.
func withProbeDeadline<T: Sendable>(
    _ limit: Duration,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw BackendError(.unavailable, code: "ProbeTimeout", message: "no answer within \(limit)")
        }
        return value
    }
}
