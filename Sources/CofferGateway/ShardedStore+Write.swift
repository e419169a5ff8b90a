import CofferCore
import Crypto
import FoundationEssentials
import NIOCore

// Writes: placement, conditions, buffered and streamed bodies, replica outcomes.
extension ShardedStore {
    /// Stores `body` on the key's R write targets (see the type's documentation).
    ///
    /// - Durability: returns once every one of the R backends acknowledged the write (what each promises then: a
    ///   Coffer node has fsynced, MinIO has written to its drives).
    /// - Errors: ``StoreError/alreadyExists``, ``StoreError/preconditionFailed`` (conditions, checked before writing);
    ///   ``StoreError/incompleteBody``, ``StoreError/digestMismatch`` (nothing is stored); ``StoreError/tooLarge``
    ///   for a body over ``Configuration/bufferLimit`` without a Content-Length; ``StoreError/unavailable`` when fewer
    ///   than R backends are healthy or one failed; ``StoreError/busy``; ``StoreError/insufficientStorage``. After
    ///   an error some replicas may hold the new version (they are remembered, and reads stay consistent).
    public func write(
        _ key: BlobKey,
        body: some AsyncSequence<ByteBuffer, any Error> & Sendable,
        options: WriteOptions
    ) async throws -> WriteResult {
        _ = try BodyCheck(options)  // an announced length that no body can have fails before the key is held
        let name = key.rawValue
        await locks.lock(name)
        defer { locks.unlock(name) }
        generations.bump(name)
        cache?.invalidate(name)
        do {
            let (result, bytes) = try await writeLocked(key, body: body, options: options)
            let generation = generations.bump(name)
            cache?.invalidate(name)
            if let cache, let bytes {
                cache.insert(name, info: result.info, bytes: bytes) { generations.current(name) == generation }
            }
            return result
        } catch {
            generations.bump(name)
            cache?.invalidate(name)
            throw error
        }
    }

    /// The write, holding the key's lock. Returns the result and, for a buffered body, its bytes (for the cache).
    private func writeLocked(
        _ key: BlobKey,
        body: some AsyncSequence<ByteBuffer, any Error> & Sendable,
        options: WriteOptions
    ) async throws -> (WriteResult, ByteBuffer?) {
        let name = key.rawValue
        let snapshot = self.snapshot
        let route = route(name, in: snapshot)
        defer { release(route) }
        let ranked = route.gates
        let targets = writeTargets(ranked, in: snapshot)
        let replicas = replicaCount(snapshot)
        guard !targets.isEmpty, targets.count == replicas else {
            throw StoreError.unavailable.with(
                message: "\(targets.count) of the \(replicas) backends this key needs are healthy")
        }
        // On a shared volume the gateway knows whether the name exists; elsewhere an unconditional write is not
        // looked up first (a round trip) and answers "created".
        var created = true
        if case .present = names?.entry(name)?.state { created = false }
        if options.condition != .none {
            let current = try await currentVersion(key)
            if let refusal = options.condition.refusal(current: current) { throw refusal }
            created = current == nil
        }
        let contentType = options.contentType
        var iterator = body.makeAsyncIterator()
        var check = try BodyCheck(options)
        let results: [(BackendGate, Result<BackendObject, any Error>)]
        var buffered: ByteBuffer?
        if let length = options.expectedLength, length > Int64(configuration.bufferLimit) {
            do {
                results = try await streamWrite(
                    name, iterator: &iterator, length: length, check: &check, targets: targets,
                    contentType: contentType)
            } catch {
                // A shared volume's backend truncates before it writes: whatever it got is now the file.
                names?.recordDoubt(name, backend: targets[0].id)
                throw error
            }
        } else {
            var buffer = ByteBuffer()
            buffer.reserveCapacity(Int(options.expectedLength ?? 16 * 1024))
            while let chunk = try await Self.nextChunk(&iterator) {
                try check.update(chunk)
                if buffer.readableBytes + chunk.readableBytes > configuration.bufferLimit {
                    throw StoreError.tooLarge.with(
                        message: "bodies over \(configuration.bufferLimit) bytes need a Content-Length here")
                }
                buffer.writeImmutableBuffer(chunk)
            }
            try check.finish()
            buffered = buffer
            results = await putAll(name, targets: targets, contentType: contentType) { _ in .buffer(buffer) }
        }
        let primary: BackendObject
        do {
            primary = try settle(name, ranked: ranked, targets: targets, results: results)
        } catch {
            names?.recordDoubt(name, backend: targets[0].id)
            throw error
        }
        let info = BlobInfo(
            size: check.count, etag: primary.etag ?? check.md5Hex,
            lastModifiedMillis: primary.lastModifiedMillis ?? Int64(Date().timeIntervalSince1970 * 1000),
            contentType: contentType ?? BlobInfo.defaultContentType)
        names?.recordPresent(name, info, backend: targets[0].id)
        return (WriteResult(created: created, info: info), buffered)
    }

    /// The next chunk of a client's body; its failure (the client went away) is ``StoreError/incompleteBody``.
    static func nextChunk<I: AsyncIteratorProtocol>(_ iterator: inout I) async throws -> ByteBuffer?
    where I.Element == ByteBuffer {
        do {
            return try await iterator.next()
        } catch let error as StoreError {
            throw error
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw StoreError.incompleteBody.with(message: "the body ended early: \(error)")
        }
    }

    /// Sends `body(i)` to each target at once; returns every outcome in target order.
    func putAll(
        _ key: String,
        targets: [BackendGate],
        contentType: String?,
        body: (Int) -> BackendBody
    ) async -> [(BackendGate, Result<BackendObject, any Error>)] {
        let payloads = targets.indices.map(body)
        // Each child stores its outcome in its own slot and returns nothing: a task group whose children return a
        // tuple holding `Result<_, any Error>` read back a wrong index in release builds (Swift 6.3.1).
        let slots = OutcomeSlots(count: targets.count)
        await withTaskGroup(of: Void.self) { group in
            for (index, gate) in targets.enumerated() {
                let payload = payloads[index]
                group.addTask {
                    do {
                        slots.set(index, .success(try await gate.put(key, body: payload, contentType: contentType)))
                    } catch {
                        slots.set(index, .failure(error))
                    }
                }
            }
        }
        return Array(zip(targets, slots.outcomes))
    }

    /// Streams the body to every target at once through bounded pipes, holding the last chunk back until the body
    /// passed its checks: on a failed check every pipe fails, so no backend receives the announced length and none
    /// stores anything. Throws the client's error (the body's), else returns each target's outcome.
    private func streamWrite<I: AsyncIteratorProtocol>(
        _ key: String,
        iterator: inout I,
        length: Int64,
        check: inout BodyCheck,
        targets: [BackendGate],
        contentType: String?
    ) async throws -> [(BackendGate, Result<BackendObject, any Error>)] where I.Element == ByteBuffer {
        let pipes = targets.map { _ in ChunkPipe(capacity: 4) }
        let slots = OutcomeSlots(count: targets.count)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, gate) in targets.enumerated() {
                let pipe = pipes[index]
                group.addTask {
                    defer { pipe.close() }
                    do {
                        let body = BackendBody.stream(length: length, pipe.stream)
                        slots.set(index, .success(try await gate.put(key, body: body, contentType: contentType)))
                    } catch {
                        slots.set(index, .failure(error))
                    }
                }
            }
            var clientError: (any Error)?
            do {
                var held: ByteBuffer?
                var abandoned = false
                while let chunk = try await Self.nextChunk(&iterator) {
                    try check.update(chunk)
                    if let previous = held {
                        for pipe in pipes { await pipe.send(previous) }
                    }
                    held = chunk
                    if pipes.allSatisfy(\.isClosed) {
                        abandoned = true  // every replica failed: stop reading; their errors tell why
                        break
                    }
                }
                if !abandoned {
                    try check.finish()
                    if let held {
                        for pipe in pipes { await pipe.send(held) }
                    }
                    for pipe in pipes { pipe.finish() }
                }
            } catch {
                clientError = error
                for pipe in pipes { pipe.fail(error) }
            }
            try await group.waitForAll()
            if let clientError { throw clientError }
            return Array(zip(targets, slots.outcomes))
        }
    }

    /// Accounts for the replicas' outcomes: replicas that got the write are current; those that failed, and the
    /// ranked backends skipped as unhealthy, are marked outdated when at least one replica got it. Returns the
    /// primary's answer, or throws the most telling failure.
    func settle(
        _ key: String,
        ranked: [BackendGate],
        targets: [BackendGate],
        results: [(BackendGate, Result<BackendObject, any Error>)]
    ) throws -> BackendObject {
        var succeeded: [String] = []
        var failed: [String] = []
        var errors: [any Error] = []
        var primary: BackendObject?
        for (gate, outcome) in results {
            switch outcome {
            case .success(let object):
                succeeded.append(gate.id)
                if primary == nil { primary = object }
            case .failure(let error):
                failed.append(gate.id)
                errors.append(error)
            }
        }
        if !succeeded.isEmpty, configuration.placement == .hashed {
            stale.clear(key, backends: succeeded)
            // Backends ranked above the last target that were skipped (unhealthy) still hold the old state.
            let lastTarget = targets.last.flatMap { last in ranked.firstIndex { $0 === last } } ?? -1
            let skipped = ranked.prefix(lastTarget + 1).filter { gate in !targets.contains { $0 === gate } }
            if !stale.mark(key, backends: failed + skipped.map(\.id)) {
                logger.warning(
                    "too many outdated replicas to track; a read may return an older version",
                    metadata: ["blob.key": "\(key)"])
            }
        }
        if !errors.isEmpty {
            let error = Self.worst(errors)
            logger.warning(
                "write failed",
                metadata: ["blob.key": "\(key)", "error": "\(error)", "replicasWritten": "\(succeeded)"])
            throw error
        }
        return primary!
    }
}
