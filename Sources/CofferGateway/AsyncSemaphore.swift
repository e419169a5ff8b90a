import Synchronization

/// A counting semaphore for tasks, first in first out: ``acquire()`` waits (suspending, never blocking a thread) until
/// a permit is free, and permits go to waiters in arrival order. A cancelled waiter leaves the queue and throws
/// `CancellationError`.
final class AsyncSemaphore: Sendable {
    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var available: Int
        var waiters: [Waiter] = []
        /// Index of the first live waiter in `waiters` (dequeued ones before it are compacted away in bulk).
        var head = 0
        var nextID: UInt64 = 0
        var cancelled: Set<UInt64> = []

        var waiting: Int { waiters.count - head }

        mutating func popFirst() -> Waiter? {
            guard head < waiters.count else { return nil }
            let waiter = waiters[head]
            head += 1
            if head > 64 && head * 2 > waiters.count {
                waiters.removeFirst(head)
                head = 0
            }
            return waiter
        }
    }

    private let state: Mutex<State>
    let permits: Int

    init(permits: Int) {
        self.permits = max(1, permits)
        self.state = Mutex(State(available: max(1, permits)))
    }

    /// Permits in use.
    var inUse: Int { state.withLock { permits - $0.available } }

    /// Tasks waiting for a permit.
    var waiting: Int { state.withLock { $0.waiting } }

    /// Takes a permit if one is free right now.
    func tryAcquire() -> Bool {
        state.withLock { state in
            guard state.available > 0, state.waiting == 0 else { return false }
            state.available -= 1
            return true
        }
    }

    /// Takes a permit, waiting in line for one.
    ///
    /// - Errors: `CancellationError` when the task is cancelled while waiting (it then holds no permit).
    func acquire() async throws {
        let id: UInt64? = state.withLock { state in
            if state.available > 0, state.waiting == 0 {
                state.available -= 1
                return nil
            }
            state.nextID += 1
            return state.nextID
        }
        guard let id else { return }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let cancelledEarly = state.withLock { state in
                    if state.cancelled.remove(id) != nil { return true }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return false
                }
                if cancelledEarly { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            let removed: Waiter? = state.withLock { state in
                if let index = state.waiters[state.head...].firstIndex(where: { $0.id == id }) {
                    return state.waiters.remove(at: index)
                }
                // Not queued yet (or already granted): remember, so that the enqueue gives up.
                state.cancelled.insert(id)
                return nil
            }
            removed?.continuation.resume(throwing: CancellationError())
        }
        // A permit granted while the cancellation raced: the `cancelled` mark is left for an id never enqueued again.
        state.withLock { _ = $0.cancelled.remove(id) }
    }

    /// Returns a permit: the longest waiter gets it, else it becomes free.
    func release() {
        let next: Waiter? = state.withLock { state in
            if let waiter = state.popFirst() { return waiter }
            state.available = min(permits, state.available + 1)
            return nil
        }
        next?.continuation.resume()
    }
}
