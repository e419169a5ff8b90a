import CofferCore
import NIOCore

// Shared placement (`--shared-volume`): every backend serves one volume, each with its own stale views of it. Reads of
// a name share it and writes and deletes hold it alone, in arrival order, across all backends; what the gateway
// acknowledged (``SharedNames``) decides what a backend's answer may be.
extension ShardedStore {
    /// A read on a shared volume: from the cache, from what the gateway knows (absent names, HEADs and
    /// conditions of known ones need no backend), else from one backend, holding the name shared until the body has
    /// been read (a write of the name waits for it, so a backend never truncates a file under a reader).
    ///
    /// - Errors: as ``read(_:options:)``; ``StoreError/badGateway`` when a backend's body cannot be the object.
    func sharedRead(_ key: BlobKey, options: ReadOptions) async throws -> BlobRead {
        let name = key.rawValue
        if let cache, let (info, bytes) = cache.lookup(name) {
            return Self.answer(info, bytes: bytes, options: options)
        }
        await locks.lock(name, exclusive: false)
        let hold = SlotHolder { [locks] in locks.unlock(name, exclusive: false) }
        do {
            var result = try await sharedReadHeld(name, options: options)
            if case .stream(let body) = result.body {
                result.body = .stream(body.releasing(hold))
            } else {
                hold.release()
            }
            return result
        } catch {
            hold.release()
            throw Self.storeError(error)
        }
    }

    /// What ``readNow(_:options:)`` can answer on a shared volume without a backend: a cached object, a name known
    /// absent (404), or a known name when no body is needed (HEAD, 304, 412, 416).
    func sharedReadNow(_ name: String, options: ReadOptions) -> Result<BlobRead, StoreError>? {
        if let cache, let (info, bytes) = cache.lookup(name) {
            return .success(Self.answer(info, bytes: bytes, options: options))
        }
        switch names?.entry(name)?.state {
        case .absent:
            return .failure(.notFound)
        case .present(let info):
            let decision = options.evaluate(against: info)
            guard options.bodyRange(for: decision, size: info.size) == nil else { return nil }
            return .success(BlobRead(info: info, decision: decision, body: nil))
        case .inDoubt, nil:
            return nil
        }
    }

    /// The read, holding the name (shared or exclusive). Errors are backends' (``BackendError``) or the store's.
    func sharedReadHeld(_ name: String, options: ReadOptions) async throws -> BlobRead {
        if let cache, let (info, bytes) = cache.lookup(name) {
            return Self.answer(info, bytes: bytes, options: options)
        }
        var known: BlobInfo?
        switch names?.entry(name)?.state {
        case .absent:
            throw StoreError.notFound
        case .present(let info):
            let decision = options.evaluate(against: info)
            guard options.bodyRange(for: decision, size: info.size) != nil else {
                return BlobRead(info: info, decision: decision, body: nil)
            }
            known = info
        case .inDoubt, nil:
            break
        }
        let generation = generations.current(name)
        let route = route(name, in: snapshot)
        defer { release(route) }
        guard let gate = route.gates.first else {
            throw StoreError.unavailable.with(message: "no backends are configured")
        }
        do {
            if let known {
                return try await readKnown(name, known, from: gate, options: options, generation: generation)
            }
            let result = try await read(name, from: gate, options: options, generation: generation)
            names?.recordPresent(name, result.info, backend: gate.id)
            return result
        } catch let error as BackendError where error.kind == .notFound {
            // One backend's word is everyone's on a shared volume: the file is not there.
            names?.recordAbsent(name, missed: [], complete: false)
            throw StoreError.notFound
        }
    }

    /// Reads a name whose version the gateway knows: the backend's body must have exactly `info.size` bytes (a body
    /// that is shorter, longer, or an error text is never passed on), and the metadata is the gateway's.
    private func readKnown(
        _ name: String,
        _ info: BlobInfo,
        from gate: BackendGate,
        options: ReadOptions,
        generation: UInt64
    ) async throws -> BlobRead {
        let decision = options.evaluate(against: info)
        let range = options.bodyRange(for: decision, size: info.size) ?? 0..<0
        let whole = 0..<info.size
        if info.size <= Int64(configuration.smallObjectLimit) {
            let got = try await gate.get(name, range: nil, expectedSize: info.size)
            try Self.expect(got, size: info.size, range: whole, from: gate)
            let bytes = try await collect(got.body, count: info.size)
            names?.recordPresent(name, info, backend: gate.id)
            cache?.insert(name, info: info, bytes: bytes) { generations.current(name) == generation }
            return Self.answer(info, bytes: bytes, options: options)
        }
        let got = try await gate.get(name, range: range == whole ? nil : range, expectedSize: info.size)
        try Self.expect(got, size: info.size, range: range, from: gate)
        names?.recordPresent(name, info, backend: gate.id)
        return BlobRead(info: info, decision: decision, body: .stream(got.body))
    }

    /// Throws `.invalidResponse` unless `got` is `range` of an object of `size` bytes.
    private static func expect(_ got: BackendGet, size: Int64, range: Range<Int64>, from gate: BackendGate) throws {
        guard got.object.size == size, got.range == range else {
            var error = BackendError(
                .invalidResponse, code: "WrongLength",
                message: "served \(got.range) of \(got.object.size) bytes; the object has \(size)")
            error.backend = gate.id
            throw error
        }
    }

    /// A delete on a shared volume, holding the name alone: a name known absent is 404 at once; otherwise the
    /// DELETE goes to every backend that may know the name (all of them, the first time this gateway deletes it),
    /// so that none keeps a stale view of it. Succeeds when one backend removed the file; those that could not be
    /// reached are remembered (``SharedNames``). The caller holds the name (``mutating(_:_:)``).
    func sharedDelete(_ key: BlobKey, condition: WriteCondition) async throws -> BlobInfo {
        let name = key.rawValue
        guard let current = try await currentVersion(key) else { throw StoreError.notFound }
        if let refusal = condition.refusal(current: current) { throw refusal }
        let gates = snapshot.gates
        let entry = names?.entry(name)
        var targets = gates
        if let entry, entry.complete {
            let knowing = gates.filter { entry.backends.contains($0.id) }
            if !knowing.isEmpty { targets = knowing }
        }
        let complete = targets.count == gates.count || entry?.complete == true
        let outcomes = await deleteEach(name, from: targets)
        let failed = Set(outcomes.failed.map(\.id))
        guard !outcomes.deleted.isEmpty || !outcomes.absent.isEmpty else {
            throw Self.worst(outcomes.failed.map(\.error))
        }
        names?.recordAbsent(name, missed: failed, complete: complete)
        if !failed.isEmpty {
            logger.warning(
                "delete missed backends; the name is answered 404 here until it is written again",
                metadata: ["blob.key": "\(name)", "backends": "\(failed.sorted())"])
        }
        return current
    }

    /// The version of `key` a condition is checked against, with the key already held (exclusive): `nil` when
    /// absent.
    ///
    /// - Errors: ``StoreError`` (the backends' failures mapped).
    func currentVersion(_ key: BlobKey) async throws -> BlobInfo? {
        do {
            if names != nil {
                return try await sharedReadHeld(key.rawValue, options: ReadOptions(includeBody: false)).info
            }
            return try await read(key, options: ReadOptions(includeBody: false)).info
        } catch let error as StoreError where error == .notFound {
            return nil
        } catch {
            throw Self.storeError(error)
        }
    }
}

extension ByteStream {
    /// The same bytes, releasing `holder` when the stream ends, fails or is dropped; errors pass through `transform`.
    func releasing(
        _ holder: SlotHolder,
        transform: @escaping @Sendable (any Error) -> any Error = { $0 }
    ) -> ByteStream {
        ByteStream {
            let cursor = StreamCursor(makeAsyncIterator())
            return {
                do {
                    guard let chunk = try await cursor.next() else {
                        holder.release()
                        return nil
                    }
                    return chunk
                } catch {
                    holder.release()
                    throw transform(error)
                }
            }
        }
    }
}
