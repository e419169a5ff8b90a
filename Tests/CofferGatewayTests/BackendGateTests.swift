import CofferCore
import NIOCore
import Synchronization
import Testing

@testable import CofferGateway

/// ``BackendGate``: the cap and its queue, throttling retries, the circuit breaker and the health probe, against a
/// ``FakeBackend`` whose behaviour each test sets.
@Suite(.timeLimit(.minutes(2)))
struct BackendGateTests {
    @Test("at most N calls in flight; 50 waiting calls all succeed")
    func capWithQueue() async throws {
        let backend = FakeBackend(id: "fake://cap")
        backend.store("k", [1, 2, 3])
        backend.set { $0.delay = .milliseconds(50) }
        let gate = BackendGate(backend, configuration: .init(maxConcurrentRequests: 10), logger: gatewayTestLogger)
        let succeeded = GatewayTicker()
        await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<60 {
                group.addTask {
                    if index % 2 == 0 {
                        _ = try await gate.head("k")
                    } else {
                        let got = try await gate.get("k", range: nil)
                        for try await _ in got.body {}
                    }
                    _ = succeeded.next()
                }
            }
        }
        #expect(succeeded.next() == 61)
        #expect(backend.maxInFlight <= 10)
        #expect(backend.maxInFlight >= 5, "the calls did overlap")
        #expect(gate.metrics.maxInFlight <= 10)
        #expect(gate.metrics.inFlight == 0)
        #expect(gate.metrics.waiting == 0)
    }

    @Test("waiters get permits first in, first out; a cancelled waiter leaves the queue")
    func semaphoreOrder() async throws {
        let semaphore = AsyncSemaphore(permits: 1)
        try await semaphore.acquire()
        let order = GatewayLockedBox<[Int]>([])
        var tasks: [Task<Void, any Error>] = []
        for index in 0..<5 {
            tasks.append(
                Task {
                    try await semaphore.acquire()
                    order.withLock { $0.append(index) }
                    semaphore.release()
                })
            // Let it reach the queue before the next one.
            #expect(await gatewayEventually { semaphore.waiting == index + 1 })
        }
        let cancelled = Task { try await semaphore.acquire() }
        #expect(await gatewayEventually { semaphore.waiting == 6 })
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        #expect(semaphore.waiting == 5)
        semaphore.release()
        for task in tasks { try await task.value }
        #expect(order.current == [0, 1, 2, 3, 4])
        #expect(semaphore.inUse == 0)
    }

    @Test("a GET keeps its slot until its body is read or dropped")
    func getHoldsSlot() async throws {
        let backend = FakeBackend(id: "fake://slot")
        backend.store("k", Array(repeating: 7, count: 100))
        let gate = BackendGate(backend, configuration: .init(maxConcurrentRequests: 1), logger: gatewayTestLogger)
        var got: BackendGet? = try await gate.get("k", range: nil)
        let second = Task { try await gate.head("k") }
        try await Task.sleep(for: .milliseconds(200))
        #expect(gate.metrics.waiting == 1, "the head waits for the unread body's slot")
        for try await _ in got!.body {}
        _ = try await second.value

        // Dropping an unread body frees the slot too.
        got = try await gate.get("k", range: nil)
        let third = Task { try await gate.head("k") }
        try await Task.sleep(for: .milliseconds(100))
        #expect(gate.metrics.waiting == 1)
        got = nil
        _ = try await third.value
        #expect(gate.metrics.inFlight == 0)
        _ = got
    }

    @Test("throttled calls are retried with backoff, then fail with .busy at the deadline")
    func throttling() async throws {
        let backend = FakeBackend(id: "fake://throttle")
        backend.store("k", [1])
        let gate = BackendGate(
            backend,
            configuration: .init(
                throttleDeadline: .milliseconds(600), initialBackoff: .milliseconds(10),
                maxBackoff: .milliseconds(100)),
            logger: gatewayTestLogger)
        // Three throttled answers, then success, well within a generous deadline (CI machines stall for seconds).
        let patient = BackendGate(
            backend,
            configuration: .init(
                throttleDeadline: .seconds(30), initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(100)),
            logger: gatewayTestLogger)
        backend.set { $0.throttleNext = 3 }
        _ = try await patient.head("k")
        #expect(patient.metrics.retries == 3)
        #expect(patient.metrics.throttled == 3)

        backend.set { $0.throttleNext = .max }
        let start = ContinuousClock.now
        await #expect(throws: StoreError.busy) { _ = try await gate.head("k") }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed >= .milliseconds(300) && elapsed < .seconds(5), "gave up after \(elapsed)")
        #expect(gate.isHealthy, "throttling is not a failure")

        // A streamed body cannot be sent twice: .busy at once, one attempt.
        let calls = backend.throttled
        let stream = ByteStream { { nil } }
        await #expect(throws: StoreError.busy) {
            _ = try await gate.put("s", body: .stream(length: 0, stream), contentType: nil)
        }
        #expect(backend.throttled == calls + 1)

        // Retry-After beyond the deadline: no point waiting.
        backend.set {
            $0.throttleNext = 1
            $0.retryAfterSeconds = 30
        }
        let early = ContinuousClock.now
        await #expect(throws: StoreError.busy) { _ = try await gate.head("k") }
        #expect(ContinuousClock.now - early < .seconds(5))
    }

    @Test("the breaker opens after consecutive failures and then fails at once, even if the backend hangs")
    func breakerFailsFast() async throws {
        let backend = FakeBackend(id: "fake://breaker")
        backend.store("k", [1])
        let gate = BackendGate(
            backend, configuration: .init(failureThreshold: 3, openCooldown: .seconds(60), probeTimeout: .seconds(1)),
            logger: gatewayTestLogger)
        backend.set { $0.failure = .unavailable }
        for _ in 0..<3 {
            do {
                _ = try await gate.head("k")
                Issue.record("expected a failure")
            } catch let error as BackendError {
                #expect(error.kind == .unavailable)
            }
        }
        #expect(!gate.isHealthy)
        #expect(gate.metrics.breakerOpens == 1)
        backend.set {
            $0.failure = nil
            $0.hang = true
        }
        let callsBefore = backend.calls
        for _ in 0..<5 {
            let start = ContinuousClock.now
            await #expect(throws: StoreError.unavailable) { _ = try await gate.head("k") }
            let elapsed = ContinuousClock.now - start
            #expect(elapsed < .seconds(1), "an open breaker answered after \(elapsed)")
        }
        #expect(backend.calls == callsBefore, "no request reached the backend")
        #expect(gate.metrics.fastFailures == 5)

        // A probe of a hanging backend times out and the breaker stays open.
        #expect(await gate.checkHealth() == false)
        // The health check closes it once the backend answers again.
        backend.set { $0.hang = false }
        #expect(await gate.checkHealth() == true)
        #expect(gate.isHealthy)
        #expect(try await gate.head("k").size == 1)
    }

    @Test("calls queued behind a failing call fail fast once the breaker opens")
    func queuedCallsFailFast() async throws {
        let backend = FakeBackend(id: "fake://queue")
        backend.set {
            $0.delay = .milliseconds(300)
            $0.failure = .unavailable
        }
        let gate = BackendGate(
            backend, configuration: .init(maxConcurrentRequests: 1, failureThreshold: 1), logger: gatewayTestLogger)
        let start = ContinuousClock.now
        let outcomes = await withTaskGroup(of: String.self) { group in
            for _ in 0..<5 {
                group.addTask {
                    do {
                        _ = try await gate.head("k")
                        return "ok"
                    } catch let error as StoreError {
                        return error.identifier
                    } catch {
                        return "backend"
                    }
                }
            }
            return await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(outcomes.sorted() == ["backend", "unavailable", "unavailable", "unavailable", "unavailable"])
        // The proof is that only the first call reached the backend; the time bound is loose for loaded machines
        // (five calls queued one by one behind a 300 ms backend would take at least 1.5 s even when idle).
        #expect(backend.calls == 1)
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test("after the cooldown one real call is the trial: success closes the breaker, failure reopens it")
    func halfOpenTrial() async throws {
        let backend = FakeBackend(id: "fake://trial")
        backend.store("k", [1])
        let gate = BackendGate(
            backend, configuration: .init(failureThreshold: 1, openCooldown: .milliseconds(100)),
            logger: gatewayTestLogger)
        backend.set { $0.failure = .unavailable }
        await #expect(throws: BackendError.self) { _ = try await gate.head("k") }
        #expect(!gate.isHealthy)
        try await Task.sleep(for: .milliseconds(150))
        // The trial fails: open again, and the next call fails fast.
        await #expect(throws: BackendError.self) { _ = try await gate.head("k") }
        await #expect(throws: StoreError.unavailable) { _ = try await gate.head("k") }
        backend.set { $0.failure = nil }
        try await Task.sleep(for: .milliseconds(150))
        #expect(try await gate.head("k").size == 1)
        #expect(gate.isHealthy)
        #expect(gate.metrics.breakerOpens == 1)
    }

    @Test("an answer that is an error (404, 4xx) is not a failure; the probe never exceeds the cap")
    func answersAreHealthy() async throws {
        let backend = FakeBackend(id: "fake://answers")
        let gate = BackendGate(
            backend, configuration: .init(maxConcurrentRequests: 1, failureThreshold: 1), logger: gatewayTestLogger)
        for _ in 0..<5 {
            await #expect(throws: BackendError.self) { _ = try await gate.head("absent") }
        }
        #expect(gate.isHealthy)
        backend.store("k", [1, 2])
        let held = try await gate.get("k", range: nil)
        let probes = backend.probes
        #expect(await gate.checkHealth())
        #expect(backend.probes == probes, "no probe while the only slot is taken")
        for try await _ in held.body {}
        #expect(await gate.checkHealth())
        #expect(backend.probes == probes + 1)
        #expect(backend.maxInFlight <= 1)
    }
}
