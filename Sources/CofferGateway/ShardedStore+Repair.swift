import CofferCore
import FoundationEssentials
import Logging
import NIOCore

// Deletes, and the background repair of replicas that reads found missing or outdated.
extension ShardedStore {
    /// Deletes `key` everywhere it may be: every backend down to the fallback depth (with a shared volume, see
    /// ``sharedDelete(_:condition:)``). The version removed is looked up first (for the condition and the answer).
    ///
    /// - Durability: returns once the backends that had the key acknowledged the delete. A backend that could not
    ///   be reached is remembered as outdated, so reads do not bring its copy back, and repaired later.
    /// - Errors: ``StoreError/notFound`` when no backend had the key; ``StoreError/preconditionFailed``;
    ///   ``StoreError/unavailable`` / ``StoreError/busy`` when the key's state cannot be known or no backend could
    ///   delete it.
    public func delete(_ key: BlobKey, condition: WriteCondition) async throws -> BlobInfo {
        try await mutating(key.rawValue) {
            if names != nil { return try await sharedDelete(key, condition: condition) }
            return try await hashedDelete(key, condition: condition)
        }
    }

    /// Runs a change of `name` holding it alone, with the cache entry dropped and the generation bumped before and
    /// after (so that no read overlapping the change caches or repairs what it read).
    func mutating<T>(_ name: String, _ change: () async throws -> T) async rethrows -> T {
        await locks.lock(name)
        defer { locks.unlock(name) }
        generations.bump(name)
        cache?.invalidate(name)
        defer {
            generations.bump(name)
            cache?.invalidate(name)
        }
        return try await change()
    }

    /// A delete with hashed placement, holding the key.
    private func hashedDelete(_ key: BlobKey, condition: WriteCondition) async throws -> BlobInfo {
        let name = key.rawValue
        let current = try await read(key, options: ReadOptions(includeBody: false)).info
        if let refusal = condition.refusal(current: current) { throw refusal }
        let snapshot = self.snapshot
        let route = route(name, in: snapshot)
        defer { release(route) }
        let outcomes = await deleteEach(name, from: Array(route.gates.prefix(depth(snapshot))))
        let deleted = outcomes.deleted.map(\.id)
        let absent = outcomes.absent.map(\.id)
        let failed = outcomes.failed.map(\.id)
        guard !deleted.isEmpty else {
            if failed.isEmpty { throw StoreError.notFound }  // gone meanwhile (another gateway)
            throw Self.worst(outcomes.failed.map(\.error))
        }
        stale.clear(name, backends: deleted + absent)
        if !failed.isEmpty {
            stale.mark(name, backends: failed)
            logger.warning(
                "delete missed backends; they are marked outdated for this key",
                metadata: ["blob.key": "\(name)", "backends": "\(failed)"])
        }
        return current
    }

    /// What a DELETE sent to several backends at once did on each.
    struct DeleteOutcomes {
        var deleted: [BackendGate] = []
        var absent: [BackendGate] = []
        var failed: [(id: String, error: any Error)] = []
    }

    /// Sends DELETE to every target at once and sorts the answers.
    func deleteEach(_ key: String, from targets: [BackendGate]) async -> DeleteOutcomes {
        let slots = OutcomeSlots(count: targets.count)
        await withTaskGroup(of: Void.self) { group in
            for (index, gate) in targets.enumerated() {
                group.addTask {
                    do {
                        try await gate.delete(key)
                        slots.set(
                            index,
                            .success(BackendObject(size: 0, etag: nil, lastModifiedMillis: nil, contentType: nil)))
                    } catch {
                        slots.set(index, .failure(error))
                    }
                }
            }
        }
        var outcomes = DeleteOutcomes()
        for (gate, outcome) in zip(targets, slots.outcomes) {
            switch outcome {
            case .success: outcomes.deleted.append(gate)
            case .failure(let error as BackendError) where error.kind == .notFound: outcomes.absent.append(gate)
            case .failure(let error): outcomes.failed.append((gate.id, error))
            }
        }
        return outcomes
    }

    /// Copies `key` from `source` to `targets` (or, with no source, deletes it from them) in the background, under
    /// the key's lock, unless a write of the key happened since `generation` (the read that found the gap may be
    /// outdated then). The `unverified` replicas are asked first (HEAD) and get a copy when they lack the key or hold
    /// an older version (another etag, older Last-Modified). At most ``Configuration/maxConcurrentRepairs`` run;
    /// one per key; others are skipped (a later read schedules them again), so under load verification is
    /// best-effort.
    func scheduleRepair(
        _ key: String,
        source: BackendGate?,
        sourceInfo: BlobInfo?,
        targets: [BackendGate],
        unverified: [BackendGate],
        generation: UInt64
    ) {
        guard configuration.repair else { return }
        let limit = configuration.maxConcurrentRepairs
        let name = BlobKey(unchecked: key)
        let accepted = repairs.withLock { running in
            guard running.count < limit, !running.contains(name) else { return false }
            running.insert(name)
            return true
        }
        guard accepted else { return }
        Task {
            defer { _ = repairs.withLock { $0.remove(name) } }
            await locks.withLock(key) {
                guard generations.current(key) == generation else { return }
                guard let source else {
                    await deleteCopies(key, from: targets)
                    return
                }
                var needed = targets
                for gate in unverified where await lacks(key, gate: gate, current: sourceInfo) {
                    needed.append(gate)
                }
                if !needed.isEmpty { await copy(key, from: source, to: needed) }
            }
        }
    }

    /// Whether `gate` lacks `key` or holds an older version than `current`. Unknown (an error) counts as no.
    private func lacks(_ key: String, gate: BackendGate, current: BlobInfo?) async -> Bool {
        do {
            let object = try await gate.head(key)
            guard let current, let etag = object.etag, !current.etag.isEmpty, etag != current.etag,
                let modified = object.lastModifiedMillis
            else { return false }
            return modified < current.lastModifiedMillis
        } catch let error as BackendError where error.kind == .notFound {
            return true
        } catch {
            return false
        }
    }

    /// Copies the current version from `source` to `targets` (buffered when small, streamed to all at once else).
    private func copy(_ key: String, from source: BackendGate, to targets: [BackendGate]) async {
        var metadata: Logger.Metadata = [
            "blob.key": "\(key)", "from": "\(source.id)", "to": "\(targets.map(\.id))",
        ]
        do {
            let got = try await source.get(key, range: nil)
            let size = got.object.size
            let contentType = got.object.contentType
            let results: [(BackendGate, Result<BackendObject, any Error>)]
            if size <= Int64(configuration.bufferLimit) {
                let bytes = try await collect(got.body, count: size)
                results = await putAll(key, targets: targets, contentType: contentType) { _ in .buffer(bytes) }
            } else {
                let pipes = targets.map { _ in ChunkPipe(capacity: 4) }
                async let outcomes = putAll(key, targets: targets, contentType: contentType) {
                    .stream(length: size, pipes[$0].stream)
                }
                do {
                    for try await chunk in got.body {
                        for pipe in pipes { await pipe.send(chunk) }
                        if pipes.allSatisfy(\.isClosed) { break }
                    }
                    for pipe in pipes { pipe.finish() }
                } catch {
                    for pipe in pipes { pipe.fail(error) }
                }
                results = await outcomes
                for pipe in pipes { pipe.close() }
            }
            let repaired = results.compactMap { gate, outcome in (try? outcome.get()) == nil ? nil : gate.id }
            stale.clear(key, backends: repaired)
            metadata["repaired"] = "\(repaired)"
            metadata["bytes"] = "\(size)"
            if repaired.count == targets.count {
                logger.info("replica repaired", metadata: metadata)
            } else {
                logger.warning("replica repair failed on some backends", metadata: metadata)
            }
        } catch {
            metadata["error"] = "\(error)"
            logger.warning("replica repair failed", metadata: metadata)
        }
    }

    /// Deletes `key` from backends marked outdated for a key that is gone.
    private func deleteCopies(_ key: String, from targets: [BackendGate]) async {
        for gate in targets {
            do {
                try await gate.delete(key)
                stale.clear(key, backends: [gate.id])
            } catch let error as BackendError where error.kind == .notFound {
                stale.clear(key, backends: [gate.id])
            } catch {
                logger.debug("outdated copy not deleted yet", metadata: ["blob.key": "\(key)", "error": "\(error)"])
            }
        }
    }
}
