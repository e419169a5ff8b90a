import Histogram
import Synchronization

/// How a request ended: by status class, or `error` (no answer: connection refused, reset, closed, timed out).
enum StatusClass: Int, CaseIterable {
    case success, redirect, clientError, serverError, error

    init(status: Int?) {
        switch status {
        case .some(200..<300): self = .success
        case .some(300..<400): self = .redirect
        case .some(400..<500): self = .clientError
        case .some(500..<600): self = .serverError
        default: self = .error
        }
    }
}

/// Counts and latencies of one operation in one stage.
struct OperationStats: Sendable {
    /// Microseconds, from the intended send time to the end of the answer.
    var latency = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
    /// Requests per `StatusClass`.
    var status = [Int](repeating: 0, count: StatusClass.allCases.count)

    var requests: Int { status.reduce(0, +) }

    mutating func merge(_ other: OperationStats) {
        latency.add(other.latency)
        for i in status.indices { status[i] += other.status[i] }
    }
}

/// Everything measured in one stage.
struct StageStats: Sendable {
    var operations = BenchOperation.allCases.map { _ in OperationStats() }
    var bytesIn = 0
    var bytesOut = 0
    var invalid = 0
    var lost = 0

    mutating func merge(_ other: StageStats) {
        for i in operations.indices { operations[i].merge(other.operations[i]) }
        bytesIn += other.bytesIn
        bytesOut += other.bytesOut
        invalid += other.invalid
        lost += other.lost
    }
}

/// What happened since the progress line was last drawn.
struct IntervalStats: Sendable {
    var requests = 0
    var errors = 0
    var latency = Histogram<UInt64>(numberOfSignificantValueDigits: .three)

    mutating func merge(_ other: IntervalStats) {
        requests += other.requests
        errors += other.errors
        latency.add(other.latency)
    }
}

/// One finished request.
struct Sample {
    var operation: BenchOperation
    /// The measured stage, or `nil` for warmup and prefill (not measured, but still checked).
    var stage: Int?
    var latencyMicros: UInt64
    var status: Int?
    var bytesIn: Int
    var bytesOut: Int
    var verdict: IntegrityVerdict
}

/// The statistics of the connections on one event loop. Recording takes an uncontended lock (only the progress
/// reporter takes it from elsewhere, once a second).
final class StatsShard: Sendable {
    struct State: Sendable {
        var stages: [StageStats]
        var interval = IntervalStats()
        /// Over the whole run, prefill and warmup included.
        var invalid = 0
        var lost = 0
        var unmeasured = 0
        var unmeasuredErrors = 0
    }

    private let state: Mutex<State>

    init(stages: Int) {
        state = Mutex(State(stages: Array(repeating: StageStats(), count: stages)))
    }

    func record(_ sample: Sample) {
        state.withLock { state in
            let statusClass = StatusClass(status: sample.status)
            let isError = statusClass == .error || statusClass == .serverError
            state.interval.requests += 1
            if isError { state.interval.errors += 1 }
            _ = state.interval.latency.record(max(1, sample.latencyMicros))
            if sample.verdict == .invalid { state.invalid += 1 }
            if sample.verdict == .lost { state.lost += 1 }
            guard let stage = sample.stage else {
                state.unmeasured += 1
                if isError { state.unmeasuredErrors += 1 }
                return
            }
            state.stages[stage].operations[sample.operation.index].status[statusClass.rawValue] += 1
            _ = state.stages[stage].operations[sample.operation.index].latency.record(max(1, sample.latencyMicros))
            state.stages[stage].bytesIn += sample.bytesIn
            state.stages[stage].bytesOut += sample.bytesOut
            if sample.verdict == .invalid { state.stages[stage].invalid += 1 }
            if sample.verdict == .lost { state.stages[stage].lost += 1 }
        }
    }

    /// A connection attempt that failed (counted as an error, outside any request).
    func recordConnectFailure() {
        state.withLock { state in
            state.interval.errors += 1
        }
    }

    /// Returns and resets the interval counters.
    func takeInterval() -> IntervalStats {
        state.withLock { state in
            defer { state.interval = IntervalStats() }
            return state.interval
        }
    }

    /// Invalid and lost answers so far.
    func integrity() -> (invalid: Int, lost: Int) { state.withLock { ($0.invalid, $0.lost) } }

    func snapshot() -> State { state.withLock { $0 } }
}
