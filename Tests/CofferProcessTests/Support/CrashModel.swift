import CofferTestKit
import Synchronization

/// Bytes the load wrote, with the ETag the API must give them: the quoted hex MD5, computed here independently.
struct Body: Sendable {
    let bytes: [UInt8]
    let etag: String

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        etag = Digests.etag(bytes)
    }
}

/// What a key holds.
enum BlobState: Sendable {
    case absent
    case present(Body)
}

/// What a GET after a restart saw.
enum Observation: Sendable {
    case absent
    case present(bytes: [UInt8], etag: String?)
    /// Anything but 200 or 404 (a 500 `corrupt_data`, say).
    case failed(status: Int)

    init(_ response: TestResponse) {
        switch response.status {
        case 404: self = .absent
        case 200: self = .present(bytes: response.body, etag: response.header("etag"))
        default: self = .failed(status: response.status)
        }
    }

    /// Whether this is exactly `state`: the same bytes and the ETag their MD5 gives.
    func matches(_ state: BlobState) -> Bool {
        switch (self, state) {
        case (.absent, .absent): true
        case (.present(let bytes, let etag), .present(let body)): etag == body.etag && sameBytes(bytes, body.bytes)
        default: false
        }
    }
}

/// One write or delete the load sent.
struct Mutation: Sendable {
    enum Kind: String, Sendable {
        case put = "PUT"
        case post = "POST"
        case delete = "DELETE"
    }

    /// Unique within a run.
    let id: Int
    let kind: Kind
    let key: Int
    /// `nil` for a delete.
    let body: Body?

    /// The status the node must answer when the key is in `state` (the load owns the key while it waits).
    func expectedStatus(from state: BlobState) -> Int {
        switch (kind, state) {
        case (.put, .absent), (.post, .absent): 201
        case (.put, .present): 204
        case (.post, .present): 409
        case (.delete, .present): 204
        case (.delete, .absent): 404
        }
    }

    /// The key's state once this mutation is applied to `state`.
    func result(from state: BlobState) -> BlobState {
        switch (kind, state) {
        case (.put, _), (.post, .absent): .present(body!)
        case (.post, .present): state
        case (.delete, _): .absent
        }
    }
}

/// How a key's state after a restart compares with what the clients were told.
enum Verdict: Sendable, Equatable {
    /// The last acknowledged state.
    case acknowledged
    /// The result of a mutation that was in flight at the kill: it committed, its answer never arrived.
    case inFlightApplied
    /// Absent, or an intact version that is not the acknowledged one nor an in-flight one: an acknowledged write
    /// was lost (or an old version came back).
    case lost
    /// Bytes that are no version ever written, a wrong ETag for the bytes, or an error instead of an answer.
    case torn

    /// Judges `observed` against the last acknowledged state and the mutations in flight for the key at the kill
    /// (each was either applied whole or not at all, in some order). Returns the verdict and, unless lost or torn,
    /// the state that matched.
    static func judge(
        _ observed: Observation, acknowledged: BlobState, inFlight: [Mutation]
    ) -> (Verdict, BlobState?) {
        if observed.matches(acknowledged) { return (.acknowledged, acknowledged) }
        // A POST in flight can only have created its blob if the key could be absent when it was applied.
        var couldBeAbsent = inFlight.contains { $0.kind == .delete }
        if case .absent = acknowledged { couldBeAbsent = true }
        for mutation in inFlight {
            let result: BlobState =
                mutation.kind == .post && couldBeAbsent ? .present(mutation.body!) : mutation.result(from: acknowledged)
            if observed.matches(result) { return (.inFlightApplied, result) }
        }
        switch observed {
        case .absent: return (.lost, nil)
        case .failed: return (.torn, nil)
        case .present(let bytes, let etag): return (etag == Digests.etag(bytes) ? .lost : .torn, nil)
        }
    }
}

/// The crash loop's model of every key: the last acknowledged state, and the mutations sent but not answered. The
/// load claims a key for one mutation at a time, so the order of a key's acknowledged mutations is known exactly.
final class CrashModel: Sendable {
    struct Key: Sendable {
        var acknowledged = BlobState.absent
        var inFlight: [Mutation] = []
        var busy = false
    }

    struct Counts: Sendable {
        var acknowledged = 0
        var verified = 0
        var inFlightApplied = 0
        var inFlightDropped = 0
        var lost = 0
        var torn = 0
    }

    private struct State: Sendable {
        var keys: [Key]
        var counts = Counts()
        var failures: [String] = []
        var killed = false
    }

    private let state: Mutex<State>
    let keyCount: Int

    init(keys: Int) {
        keyCount = keys
        state = Mutex(State(keys: Array(repeating: Key(), count: keys)))
    }

    static func path(_ key: Int) -> String { "/store/crash/key-\(key)" }

    var counts: Counts { state.withLock { $0.counts } }
    var failures: [String] { state.withLock { $0.failures } }

    /// Set just before the node is killed: connection errors from then on are expected.
    var killed: Bool {
        get { state.withLock { $0.killed } }
        set { state.withLock { $0.killed = newValue } }
    }

    func fail(_ message: String) {
        state.withLock { $0.failures.append(message) }
    }

    /// Claims a random free key for one mutation, and returns it with its acknowledged state.
    func claim(using generator: inout SeededGenerator) -> (key: Int, state: BlobState) {
        state.withLock { s in
            while true {
                let key = Int.random(in: 0..<keyCount, using: &generator)
                if !s.keys[key].busy {
                    s.keys[key].busy = true
                    return (key, s.keys[key].acknowledged)
                }
            }
        }
    }

    /// Records `mutation` as sent.
    func begin(_ mutation: Mutation) {
        state.withLock { $0.keys[mutation.key].inFlight.append(mutation) }
    }

    /// The node answered `mutation`: checks the answer, then makes its result the key's acknowledged state.
    func acknowledge(_ mutation: Mutation, _ response: TestResponse) {
        state.withLock { s in
            var key = s.keys[mutation.key]
            let expected = mutation.expectedStatus(from: key.acknowledged)
            let what = "\(mutation.kind.rawValue) \(Self.path(mutation.key))"
            if response.status != expected {
                s.failures.append("\(what): \(response.status) \(response.text), expected \(expected)")
            } else if expected == 201 || expected == 204, let body = mutation.body,
                response.header("etag") != body.etag
            {
                s.failures.append("\(what): etag \(response.header("etag") ?? "none"), expected \(body.etag)")
            }
            if response.status == expected {
                key.acknowledged = mutation.result(from: key.acknowledged)
                s.counts.acknowledged += 1
            }
            key.inFlight.removeAll { $0.id == mutation.id }
            key.busy = false
            s.keys[mutation.key] = key
        }
    }

    /// The connection failed while `mutation` was in flight: it stays in flight (and the key claimed) until the
    /// restart shows whether it was applied. Before the kill, that is a failure in itself.
    func interrupted(_ mutation: Mutation, by error: any Error) {
        state.withLock { s in
            if !s.killed {
                s.failures.append(
                    "\(mutation.kind.rawValue) \(Self.path(mutation.key)) failed before the kill: \(error)")
            }
        }
    }

    /// Checks one key after a restart, counts the verdict, and makes what was observed the key's state.
    @discardableResult
    func check(_ key: Int, observed: Observation, cycle: Int) -> Verdict {
        state.withLock { s in
            let model = s.keys[key]
            let (verdict, matched) = Verdict.judge(observed, acknowledged: model.acknowledged, inFlight: model.inFlight)
            switch verdict {
            case .acknowledged:
                s.counts.verified += 1
                s.counts.inFlightDropped += model.inFlight.count
            case .inFlightApplied:
                s.counts.verified += 1
                s.counts.inFlightApplied += 1
                s.counts.inFlightDropped += model.inFlight.count - 1
            case .lost: s.counts.lost += 1
            case .torn: s.counts.torn += 1
            }
            if verdict == .lost || verdict == .torn {
                s.failures.append(
                    "cycle \(cycle): \(Self.path(key)) is \(verdict): \(describe(observed)); acknowledged "
                        + "\(describe(model.acknowledged)), in flight \(model.inFlight.map(describe))")
            }
            var now = matched ?? .absent
            if matched == nil, case .present(let bytes, _) = observed { now = .present(Body(bytes)) }
            s.keys[key] = Key(acknowledged: now)
            return verdict
        }
    }

    private func describe(_ observation: Observation) -> String {
        switch observation {
        case .absent: "absent"
        case .failed(let status): "status \(status)"
        case .present(let bytes, let etag): "\(bytes.count) bytes, etag \(etag ?? "none")"
        }
    }

    private func describe(_ state: BlobState) -> String {
        switch state {
        case .absent: "absent"
        case .present(let body): "\(body.bytes.count) bytes, etag \(body.etag)"
        }
    }

    private func describe(_ mutation: Mutation) -> String {
        "\(mutation.kind.rawValue) \(mutation.body.map { "\($0.bytes.count) bytes \($0.etag)" } ?? "")"
    }
}
