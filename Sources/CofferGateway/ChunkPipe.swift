import CofferCore
import NIOCore
import Synchronization

/// A bounded single-producer, single-consumer queue of byte chunks between tasks: ``send(_:)`` waits while
/// ``capacity`` chunks are queued, so the consumer's pace is the producer's pace (constant memory). One pipe per
/// replica of a streamed write; the producer feeds every pipe, so the slowest replica sets the pace of the upload.
///
/// The consumer side is ``stream``: a ``ByteStream`` that yields the chunks, ends after ``finish()``, and throws
/// the error given to ``fail(_:)``. When the consumer is gone (``close()``, called when its request ended),
/// ``send(_:)`` drops chunks at once and returns `false`.
final class ChunkPipe: Sendable {
    private struct State {
        var chunks: [ByteBuffer] = []
        var finished = false
        var failure: (any Error)?
        var closed = false
        var consumer: CheckedContinuation<Void, Never>?
        var producer: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())
    let capacity: Int

    init(capacity: Int = 4) {
        self.capacity = max(1, capacity)
    }

    /// Queues `chunk`, waiting while the pipe is full. Returns `false` (dropping the chunk) when the consumer is gone.
    @discardableResult
    func send(_ chunk: ByteBuffer) async -> Bool {
        while true {
            let outcome: Bool? = state.withLock { state in
                if state.closed { return false }
                guard state.chunks.count < capacity else { return nil }
                state.chunks.append(chunk)
                return true
            }
            if let outcome {
                wakeConsumer()
                return outcome
            }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    if state.closed || state.chunks.count < capacity { return true }
                    state.producer = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        }
    }

    /// Ends the stream after the queued chunks.
    func finish() {
        state.withLock { $0.finished = true }
        wakeConsumer()
    }

    /// Ends the stream with `error` at once: queued chunks are discarded, so the consumer never completes a body that
    /// must not be stored.
    func fail(_ error: any Error) {
        state.withLock { state in
            state.failure = error
            state.chunks.removeAll()
        }
        wakeConsumer()
    }

    /// The consumer is gone: pending and future chunks are dropped and a waiting producer goes on.
    func close() {
        let producer = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.closed = true
            state.chunks.removeAll()
            defer { state.producer = nil }
            return state.producer
        }
        producer?.resume()
    }

    /// Whether the consumer is gone.
    var isClosed: Bool { state.withLock { $0.closed } }

    private func wakeConsumer() {
        let consumer = state.withLock { state -> CheckedContinuation<Void, Never>? in
            defer { state.consumer = nil }
            return state.consumer
        }
        consumer?.resume()
    }

    /// The next chunk, `nil` at the end; throws the failure.
    func next() async throws -> ByteBuffer? {
        while true {
            enum Step {
                case chunk(ByteBuffer, CheckedContinuation<Void, Never>?)
                case end
                case failure(any Error)
                case wait
            }
            let step: Step = state.withLock { state in
                if let failure = state.failure { return .failure(failure) }
                if !state.chunks.isEmpty {
                    let chunk = state.chunks.removeFirst()
                    defer { state.producer = nil }
                    return .chunk(chunk, state.producer)
                }
                return state.finished ? .end : .wait
            }
            switch step {
            case .chunk(let chunk, let producer):
                producer?.resume()
                return chunk
            case .end: return nil
            case .failure(let error): throw error
            case .wait:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let resumeNow = state.withLock { state in
                        if state.failure != nil || !state.chunks.isEmpty || state.finished { return true }
                        state.consumer = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            }
        }
    }

    /// The consumer side, iterable once.
    var stream: ByteStream {
        ByteStream { [self] in { try await self.next() } }
    }
}

/// A flag that is taken once.
final class OnceFlag: Sendable {
    private let taken = Atomic<Bool>(false)

    /// `true` the first time only.
    func take() -> Bool {
        taken.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }
}
