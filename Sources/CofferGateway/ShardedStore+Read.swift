import CofferCore
import Crypto
import FoundationEssentials
import NIOCore

// Reads: the cache, the ranked backends in order, fallback, and what a read schedules for repair.
extension ShardedStore {
    /// Answers from the read cache, on the caller's thread (an event loop): whole small objects this gateway read or
    /// wrote lately. `nil` (use ``read(_:options:)``) on a miss or with no cache.
    public func readNow(_ key: BlobKey, options: ReadOptions) -> Result<BlobRead, StoreError>? {
        if names != nil { return sharedReadNow(key.rawValue, options: options) }
        guard let cache, let (info, bytes) = cache.lookup(key.rawValue) else { return nil }
        return .success(Self.answer(info, bytes: bytes, options: options))
    }

    /// Reads `key` from the first ranked backend that has it (see the type's documentation).
    ///
    /// - Errors: ``StoreError/notFound`` when every backend asked said so and fewer than R could not answer;
    ///   ``StoreError/unavailable`` or ``StoreError/busy`` when the key may be on backends that could not answer;
    ///   ``StoreError/io`` when a backend refused the request. A streamed body throws ``BackendError`` if the backend
    ///   breaks off mid-way (the HTTP layer then aborts the response).
    public func read(_ key: BlobKey, options: ReadOptions) async throws -> BlobRead {
        if names != nil { return try await sharedRead(key, options: options) }
        let name = key.rawValue
        if let cache, let (info, bytes) = cache.lookup(name) {
            return Self.answer(info, bytes: bytes, options: options)
        }
        let generation = generations.current(name)
        let snapshot = self.snapshot
        let route = route(name, in: snapshot)
        defer { release(route) }
        let ranked = route.gates
        let marked = configuration.placement == .hashed ? stale.marked(name) : []
        var missing: [BackendGate] = []
        var failures: [any Error] = []
        for gate in ranked.prefix(depth(snapshot)) where !marked.contains(gate.id) {
            do {
                let result = try await read(name, from: gate, options: options, generation: generation)
                if configuration.placement == .hashed {
                    // Replicas that lack the key (asked, or marked outdated) get a copy; the other replicas, not
                    // asked yet, are checked in the background first (a node back from the dead may be empty).
                    let lacking = Set(missing.map(\.id)).union(marked)
                    let replicas = writeTargets(ranked, in: snapshot).filter { $0 !== gate }
                    let known = replicas.filter { lacking.contains($0.id) }
                    let unchecked =
                        configuration.verifyReplicasOnRead ? replicas.filter { !lacking.contains($0.id) } : []
                    if !known.isEmpty || !unchecked.isEmpty {
                        scheduleRepair(
                            name, source: gate, sourceInfo: result.info, targets: known, unverified: unchecked,
                            generation: generation)
                    }
                }
                return result
            } catch let error as BackendError where error.kind == .notFound {
                missing.append(gate)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                failures.append(error)
            }
        }
        let tolerated = configuration.placement == .shared ? 0 : replicaCount(snapshot) - 1
        if failures.count > tolerated { throw Self.worst(failures) }
        if !marked.isEmpty {
            // The key is gone everywhere current: the marked backends may still hold a copy to delete.
            let targets = ranked.filter { marked.contains($0.id) && $0.isHealthy }
            if !targets.isEmpty {
                scheduleRepair(
                    name, source: nil, sourceInfo: nil, targets: targets, unverified: [], generation: generation)
            }
        }
        throw StoreError.notFound
    }

    /// The first R healthy backends of `ranked`: where a write of the key goes, and what a repair fills.
    func writeTargets(_ ranked: [BackendGate], in snapshot: Snapshot) -> [BackendGate] {
        Array(ranked.lazy.filter(\.isHealthy).prefix(replicaCount(snapshot)))
    }

    /// Reads `key` from one backend, applying `options`.
    ///
    /// - Errors: ``BackendError`` (`.notFound` when the backend lacks the key), ``StoreError``.
    func read(
        _ key: String,
        from gate: BackendGate,
        options: ReadOptions,
        generation: UInt64
    ) async throws -> BlobRead {
        guard options.includeBody else { return try await headRead(key, from: gate, options: options, generation) }
        let requested: Range<Int64>?
        switch options.range {
        case nil:
            requested = nil
        case .from(let first, let last):
            guard first >= 0, last.map({ $0 >= first && $0 < Int64.max }) ?? true else {
                return try await headRead(key, from: gate, options: options, generation)
            }
            requested = first..<(last.map { $0 + 1 } ?? Int64.max)
        case .suffix:
            // The size is needed first; a small object is read whole (and sliced) instead.
            let object = try await gate.head(key)
            if object.size <= Int64(configuration.smallObjectLimit) {
                requested = nil
            } else {
                var info = Self.info(object)
                if object.etag == nil { info.etag = Self.unmatchableETag() }
                let decision = options.evaluate(against: info)
                guard let range = options.bodyRange(for: decision, size: info.size) else {
                    return BlobRead(info: info, decision: decision, body: nil)
                }
                requested = range
            }
        }
        let got: BackendGet
        do {
            got = try await gate.get(key, range: requested)
        } catch let error as BackendError where error.kind == .rangeNotSatisfiable {
            return try await headRead(key, from: gate, options: options, generation)
        }
        var info = Self.info(got.object)
        let size = info.size
        if got.range == 0..<size && size <= Int64(configuration.smallObjectLimit) {
            let bytes = try await collect(got.body, count: size)
            return Self.answer(remember(key, info: info, bytes: bytes, generation), bytes: bytes, options: options)
        }
        if got.object.etag == nil {
            if size <= Int64(configuration.smallObjectLimit) {
                let (whole, bytes) = try await readWhole(key, from: gate, generation)
                return Self.answer(whole, bytes: bytes, options: options)
            }
            info.etag = Self.unmatchableETag()
        }
        let decision = options.evaluate(against: info)
        guard let range = options.bodyRange(for: decision, size: size) else {
            return BlobRead(info: info, decision: decision, body: nil)
        }
        guard range == got.range else {
            // The object changed between the HEAD that sized a suffix range and the GET.
            throw StoreError.unavailable.with(message: "the blob changed during the read; retry")
        }
        if range.count <= configuration.smallObjectLimit {
            return BlobRead(
                info: info, decision: decision, body: .buffer(try await collect(got.body, count: Int64(range.count))))
        }
        return BlobRead(info: info, decision: decision, body: .stream(got.body))
    }

    /// A body-less read (HEAD, or to decide 304/412/416) from one backend.
    private func headRead(
        _ key: String,
        from gate: BackendGate,
        options: ReadOptions,
        _ generation: UInt64
    ) async throws -> BlobRead {
        let object = try await gate.head(key)
        var info = Self.info(object)
        if object.etag == nil {
            if object.size <= Int64(configuration.smallObjectLimit) {
                let (whole, bytes) = try await readWhole(key, from: gate, generation)
                var answer = Self.answer(whole, bytes: bytes, options: options)
                if !options.includeBody { answer.body = nil }
                return answer
            }
            info.etag = Self.unmatchableETag()
        }
        let decision = options.evaluate(against: info)
        return BlobRead(info: info, decision: decision, body: nil)
    }

    /// The whole object, in memory, with its etag (the MD5 when the backend gave none); cached when allowed.
    private func readWhole(
        _ key: String,
        from gate: BackendGate,
        _ generation: UInt64
    ) async throws -> (BlobInfo, ByteBuffer) {
        let got = try await gate.get(key, range: nil)
        let bytes = try await collect(got.body, count: got.object.size)
        return (remember(key, info: Self.info(got.object), bytes: bytes, generation), bytes)
    }

    /// `info` with its etag filled in from `bytes` when missing; cached if no write overlapped the read.
    private func remember(_ key: String, info: BlobInfo, bytes: ByteBuffer, _ generation: UInt64) -> BlobInfo {
        var info = info
        if info.etag.isEmpty { info.etag = GatewayDigest.md5Hex(bytes) }
        if let cache {
            cache.insert(key, info: info, bytes: bytes) { generations.current(key) == generation }
        }
        return info
    }

    /// Reads `body` whole: exactly `count` bytes.
    func collect(_ body: ByteStream, count: Int64) async throws -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(Int(max(0, count)))
        for try await chunk in body {
            var chunk = chunk
            buffer.writeBuffer(&chunk)
        }
        guard buffer.readableBytes == count else {
            throw BackendError(
                .invalidResponse, code: "WrongLength", message: "got \(buffer.readableBytes) of \(count) bytes")
        }
        return buffer
    }

    /// The answer to `options` from a whole object in memory.
    static func answer(_ info: BlobInfo, bytes: ByteBuffer, options: ReadOptions) -> BlobRead {
        let decision = options.evaluate(against: info)
        guard let range = options.bodyRange(for: decision, size: info.size) else {
            return BlobRead(info: info, decision: decision, body: nil)
        }
        let slice = bytes.getSlice(at: bytes.readerIndex + Int(range.lowerBound), length: range.count)!
        return BlobRead(info: info, decision: decision, body: .buffer(slice))
    }

    /// A backend object's metadata as the store's (an empty etag when the backend gave none).
    static func info(_ object: BackendObject) -> BlobInfo {
        BlobInfo(
            size: object.size, etag: object.etag ?? "",
            lastModifiedMillis: object.lastModifiedMillis ?? Int64(Date().timeIntervalSince1970 * 1000),
            contentType: object.contentType ?? BlobInfo.defaultContentType)
    }

    /// An etag for an object whose backend gave none and that is too large to hash on every read: random, so it
    /// never matches a client's If-Match or If-None-Match (no false 304).
    static func unmatchableETag() -> String {
        "r" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
    }
}

/// MD5 and SHA-256 of bodies, for etags and digest checks.
enum GatewayDigest {
    static func md5Hex(_ buffer: ByteBuffer) -> String {
        var md5 = Insecure.MD5()
        buffer.withUnsafeReadableBytes { md5.update(bufferPointer: $0) }
        return hex(md5.finalize())
    }

    static func hex(_ digest: some Sequence<UInt8>) -> String { Hex.lowercase(digest) }
}
