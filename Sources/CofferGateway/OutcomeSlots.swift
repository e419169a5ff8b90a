import Synchronization

/// The outcome of each replica's write, by replica index, filled in by concurrent child tasks.
final class OutcomeSlots: Sendable {
    private let slots: Mutex<[Result<BackendObject, any Error>?]>

    init(count: Int) {
        slots = Mutex(Array(repeating: nil, count: count))
    }

    func set(_ index: Int, _ outcome: Result<BackendObject, any Error>) {
        slots.withLock { $0[index] = outcome }
    }

    /// Every outcome, in index order; a slot no child filled (cancelled before it ran) reads as cancelled.
    var outcomes: [Result<BackendObject, any Error>] {
        slots.withLock { $0.map { $0 ?? .failure(CancellationError()) } }
    }
}
