import CofferCore
import NIOCore
import Synchronization

@testable import CofferGateway

/// An in-memory ``Backend`` whose behaviour a test sets: a delay per call, hanging, failing as unavailable,
/// throttling. It records calls in flight (and the most at once) and the calls made.
final class FakeBackend: Backend {
    struct Behavior: Sendable {
        /// Every call sleeps this long first.
        var delay: Duration = .zero
        /// Calls never answer (until cancelled).
        var hang = false
        /// Calls fail with this kind (after the delay).
        var failure: BackendError.Kind?
        /// The next this-many calls answer `.throttled`.
        var throttleNext = 0
        var retryAfterSeconds: Int?
        /// `probe()` fails as unavailable.
        var probeFails = false
        /// A `get` takes its snapshot of the object, then waits this long before answering.
        var pauseAfterGet: Duration = .zero
    }

    private struct State {
        /// Keyed by bytes, as S3 keys are (``BlobKey``).
        var objects: [BlobKey: (bytes: ByteBuffer, contentType: String?)] = [:]
        var behavior = Behavior()
        var inFlight = 0
        var maxInFlight = 0
        var calls = 0
        var throttled = 0
        var probes = 0
    }

    let id: String
    private let state = Mutex(State())

    init(id: String) {
        self.id = id
    }

    func set(_ change: (inout Behavior) -> Void) {
        state.withLock { change(&$0.behavior) }
    }

    var maxInFlight: Int { state.withLock { $0.maxInFlight } }
    var inFlight: Int { state.withLock { $0.inFlight } }
    var calls: Int { state.withLock { $0.calls } }
    var throttled: Int { state.withLock { $0.throttled } }
    var probes: Int { state.withLock { $0.probes } }
    var keys: [String] { state.withLock { $0.objects.keys.map(\.rawValue) } }

    /// The bytes held under `key`, or `nil`.
    func bytes(_ key: String) -> [UInt8]? {
        state.withLock { state in state.objects[BlobKey(unchecked: key)].map { Array($0.bytes.readableBytesView) } }
    }

    func store(_ key: String, _ bytes: [UInt8]) {
        state.withLock { $0.objects[BlobKey(unchecked: key)] = (ByteBuffer(bytes: bytes), nil) }
    }

    /// Runs one call under the behaviour: counts it in flight, sleeps, hangs, fails or throttles, then `body`.
    private func perform<T>(_ body: () throws -> T) async throws -> T {
        let behavior = state.withLock { state -> Behavior in
            state.calls += 1
            state.inFlight += 1
            state.maxInFlight = max(state.maxInFlight, state.inFlight)
            return state.behavior
        }
        defer { state.withLock { $0.inFlight -= 1 } }
        if behavior.delay > .zero { try await Task.sleep(for: behavior.delay) }
        if behavior.hang { try await Task.sleep(for: .seconds(3600)) }
        let throttle = state.withLock { state -> Bool in
            guard state.behavior.throttleNext > 0 else { return false }
            state.behavior.throttleNext -= 1
            state.throttled += 1
            return true
        }
        if throttle {
            throw BackendError(
                .throttled, status: 429, code: "HTTP429", retryAfterSeconds: behavior.retryAfterSeconds)
        }
        if let failure = behavior.failure {
            throw BackendError(failure, status: failure == .unavailable ? nil : 500, code: "Fake")
        }
        return try body()
    }

    private func object(_ key: String, _ entry: (bytes: ByteBuffer, contentType: String?)) -> BackendObject {
        BackendObject(
            size: Int64(entry.bytes.readableBytes), etag: GatewayDigest.md5Hex(entry.bytes), lastModifiedMillis: 1000,
            contentType: entry.contentType)
    }

    func head(_ key: String) async throws -> BackendObject {
        try await perform {
            guard let entry = state.withLock({ $0.objects[BlobKey(unchecked: key)] }) else {
                throw BackendError(.notFound, code: "404")
            }
            return object(key, entry)
        }
    }

    func get(_ key: String, range: Range<Int64>?, expectedSize: Int64?) async throws -> BackendGet {
        let answer = try await snapshotGet(key, range: range)
        let pause = state.withLock { $0.behavior.pauseAfterGet }
        if pause > .zero { try await Task.sleep(for: pause) }
        return answer
    }

    private func snapshotGet(_ key: String, range: Range<Int64>?) async throws -> BackendGet {
        try await perform {
            guard let entry = state.withLock({ $0.objects[BlobKey(unchecked: key)] }) else {
                throw BackendError(.notFound, code: "404")
            }
            let size = Int64(entry.bytes.readableBytes)
            var served = 0..<size
            if let range {
                guard range.lowerBound < size else { throw BackendError(.rangeNotSatisfiable, code: "416") }
                served = range.lowerBound..<min(range.upperBound, size)
            }
            let slice = entry.bytes.getSlice(at: Int(served.lowerBound), length: served.count)!
            let once = OnceFlag()
            return BackendGet(
                object: object(key, entry), range: served,
                body: ByteStream { { once.take() && slice.readableBytes > 0 ? slice : nil } })
        }
    }

    func put(_ key: String, body: BackendBody, contentType: String?) async throws -> BackendObject {
        var bytes: ByteBuffer
        switch body {
        case .buffer(let buffer): bytes = buffer
        case .stream(let length, let stream):
            // Like a real server: the upload is complete once the announced length arrived.
            bytes = ByteBuffer()
            var iterator = stream.makeAsyncIterator()
            while Int64(bytes.readableBytes) < length, var chunk = try await iterator.next() {
                bytes.writeBuffer(&chunk)
            }
        }
        guard Int64(bytes.readableBytes) == body.length else { throw StoreError.incompleteBody }
        let stored = bytes
        return try await perform {
            state.withLock { $0.objects[BlobKey(unchecked: key)] = (stored, contentType) }
            return object(key, (stored, contentType))
        }
    }

    func delete(_ key: String) async throws {
        try await perform {
            guard state.withLock({ $0.objects.removeValue(forKey: BlobKey(unchecked: key)) }) != nil else {
                throw BackendError(.notFound, code: "404")
            }
        }
    }

    func probe() async throws {
        let fails = state.withLock { state -> Bool in
            state.probes += 1
            return state.behavior.probeFails || state.behavior.failure == .unavailable
        }
        if fails { throw BackendError(.unavailable, code: "FakeProbe") }
        if state.withLock({ $0.behavior.hang }) { try await Task.sleep(for: .seconds(3600)) }
    }
}

/// A counter for stream closures: ``next()`` returns 1, 2, 3, …
final class GatewayTicker: Sendable {
    private let value = Atomic<Int>(0)

    func next() -> Int { value.wrappingAdd(1, ordering: .relaxed).newValue }
}

/// A value behind a lock, shareable between tasks.
final class GatewayLockedBox<Value: Sendable>: Sendable {
    private let value: Mutex<Value>

    init(_ value: Value) { self.value = Mutex(value) }

    func withLock<T>(_ body: (inout Value) -> T) -> T { value.withLock { body(&$0) } }
    var current: Value { value.withLock { $0 } }
}
