import CofferCore
import CofferEngineTesting
import CofferTestKit
import Testing

@testable import CofferEngine

/// Power loss, modelled by ``FaultInjectingFileIO``: concurrent writers run until the power is cut at a random call;
/// the files are then rolled back to their last sync, keep a random prefix of what was written since (the torn part
/// sometimes zero-filled), and may lose directory entries not yet fsynced. After each cut the directory is checked
/// offline (``Verifier``: nothing damaged, only crash leftovers) and reopened with a plain engine: every acknowledged
/// write reads back byte-exact, every acknowledged delete holds, every unacknowledged write is whole or absent. Each
/// lineage is a crash loop: the next cycle writes on top of what the previous recovery left.
@Suite("Power loss: crash-restart cycles under concurrent writers")
struct PowerLossTests {
    static let lineages = 10
    static let cyclesPerLineage = 7
    static let writers = 6
    static let keysPerWriter = 4
    static let operationsPerWriter = 14
    static let inlineThreshold = 1024

    static func configuration(_ directory: TestDirectory, fileIO: (any FileIO)? = nil) -> EngineConfiguration {
        testConfiguration(directory, fileIO: fileIO) {
            $0.inlineThreshold = inlineThreshold
            // Small segments, so cuts also land around segment rotation.
            $0.segmentSize = 32 * 1024
            $0.compactionInterval = nil
        }
    }

    @Test("acknowledged writes survive every cut; unacknowledged ones are whole or absent; nothing is torn")
    func crashLoop() async throws {
        var counts = PowerLossCounts()
        for lineage in 0..<Self.lineages {
            try await withTestDirectory { directory async throws in
                var histories: [String: KeyHistory] = [:]
                for w in 0..<Self.writers {
                    for k in 0..<Self.keysPerWriter { histories["p/w\(w)/k\(k)"] = KeyHistory(acknowledged: nil) }
                }
                for cycle in 0..<Self.cyclesPerLineage {
                    let seed = UInt64(lineage * 1000 + cycle)
                    let violations = try await Self.cycle(
                        directory, seed: seed, histories: &histories, counts: &counts)
                    for violation in violations { Issue.record(Comment(rawValue: violation)) }
                }
            }
        }
        print(
            """
            power loss: \(counts.cycles) cycles (\(counts.cutsDuringWrites) cut during writes), \
            \(counts.putsAcknowledged) puts acknowledged (\(counts.spilledPutsAcknowledged) spilled), \
            \(counts.deletesAcknowledged) deletes acknowledged, \(counts.readsChecked) reads checked live, \
            \(counts.keysVerified) key states verified after restart (\(counts.recoveriesCut) restarts cut during \
            recovery); \(counts.unacknowledged) unacknowledged \
            (\(counts.unacknowledgedFound) found whole after restart); \(counts.unsyncedBytes) unsynced bytes \
            (\(counts.unsyncedBytesKept) kept, \(counts.tornWrites) torn writes), \(counts.entriesLost) directory \
            entries lost, \(counts.unlinksUndone) unlinks undone; \(counts.compactedSegments) segments compacted \
            online; verify saw \(counts.tornTailsSeen) torn tails and \(counts.orphansSeen) orphan spill files
            """)
        #expect(counts.cycles == Self.lineages * Self.cyclesPerLineage)
        #expect(counts.cutsDuringWrites > counts.cycles / 2)
        #expect(counts.unacknowledged > 0 && counts.tornWrites > 0 && counts.entriesLost > 0)
    }

    /// One cycle: write until the power goes, apply the power-loss model, check offline, reopen and check every key.
    /// Returns what went wrong (nothing, for a correct engine). `wrap` puts a file-system layer between the engine and
    /// the seam (the negative controls use one that drops syncs).
    @discardableResult
    static func cycle(
        _ directory: TestDirectory, seed: UInt64, histories: inout [String: KeyHistory], counts: inout PowerLossCounts,
        wrap: (FaultInjectingFileIO) -> any FileIO = { $0 }
    ) async throws -> [String] {
        var violations: [String] = []
        var random = SplitMix64(seed: seed &* 0x9E37_79B9 &+ 17)
        let io = FaultInjectingFileIO(tracksPowerLoss: true)
        let engine = try await openEngine(configuration(directory, fileIO: wrap(io)))
        // A third of the cycles also write short (at most 512 bytes to 8 KiB per pwrite), so cuts land inside records.
        let shortWrites = random.next() % 3 == 0 ? 512 + Int(random.next() % 7680) : nil
        io.update {
            $0.callsUntilPowerCut = 1 + Int(random.next() % 360)
            $0.maxBytesPerWrite = shortWrites
        }
        let start = histories
        let results = await withTaskGroup(of: ([String: KeyHistory], PowerLossCounts).self) { group in
            for w in 0..<writers {
                let keys = (0..<keysPerWriter).map { "p/w\(w)/k\($0)" }
                let writer = PowerLossWriter(
                    engine: engine, io: io, keys: keys, seed: random.next(), operations: operationsPerWriter,
                    inlineThreshold: inlineThreshold)
                let mine = start.filter { keys.contains($0.key) }
                group.addTask { await writer.run(mine) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        if io.isPowerCut { counts.cutsDuringWrites += 1 } else { io.cutPower() }
        try await engine.close()
        for (mine, writerCounts) in results {
            histories.merge(mine) { _, new in new }
            counts.add(writerCounts)
        }

        let loss = try io.applyPowerLoss(seed: random.next())
        counts.cycles += 1
        counts.unsyncedBytes += loss.unsyncedBytes
        counts.unsyncedBytesKept += loss.keptBytes
        counts.tornWrites += loss.tornWrites
        counts.entriesLost += loss.lostEntries
        counts.unlinksUndone += loss.unlinksUndone

        // Offline, before any recovery: a power cut leaves crash leftovers at most, never damage.
        let offline = try Verifier(directory: directory.path).verify()
        if !offline.damagedBlobs.isEmpty || !offline.regions.allSatisfy({ $0.kind == .tornTail }) {
            violations.append("seed \(seed): offline check found damage: \(offline.damagedBlobs) \(offline.regions)")
        }
        counts.tornTailsSeen += offline.regions.count
        counts.orphansSeen += offline.orphanSpillFiles.count

        // Every third cycle the power also goes while the next start is recovering (cutting the torn tail, removing
        // orphans): the start after that must still find every acknowledged write.
        if random.next() % 3 == 0 {
            let restart = FaultInjectingFileIO(tracksPowerLoss: true)
            restart.update { $0.callsUntilPowerCut = 1 + Int(random.next() % 40) }
            if let engine = try? await openEngine(configuration(directory, fileIO: wrap(restart))) {
                try await engine.close()
            }
            if restart.isPowerCut { counts.recoveriesCut += 1 } else { restart.cutPower() }
            _ = try restart.applyPowerLoss(seed: random.next())
        }

        try await withEngine(configuration(directory)) { engine async throws in
            var live = 0
            for key in histories.keys.sorted() {
                let history = histories[key]!
                let found: [UInt8]?
                do {
                    found = try await engine.getIfPresent(key)
                } catch {
                    violations.append("seed \(seed): \(key) failed to read after restart: \(error)")
                    histories[key] = KeyHistory(acknowledged: nil)
                    continue
                }
                let acknowledged = found == history.acknowledged
                if !history.candidates.contains(where: { $0 == found }) {
                    violations.append(
                        """
                        seed \(seed): \(key) read \(found.map { "\($0.count) bytes" } ?? "not found"), expected \
                        \(history.acknowledged.map { "\($0.count) bytes" } ?? "not found") or one of \
                        \(history.unacknowledged.count) unacknowledged writes
                        """)
                }
                if !acknowledged && history.unacknowledged.contains(where: { $0 == found }) {
                    counts.unacknowledgedFound += 1
                }
                counts.keysVerified += 1
                if found != nil { live += 1 }
                // What the restarted engine serves is now the durable state the next cycle builds on.
                histories[key] = KeyHistory(acknowledged: found)
            }
            if engine.count != live { violations.append("seed \(seed): \(engine.count) keys live, \(live) expected") }
        }
        let recovered = try Verifier(directory: directory.path).verify()
        if recovered.status != .clean {
            violations.append("seed \(seed): after recovery the check says \(recovered.status)")
        }
        return violations
    }
}
