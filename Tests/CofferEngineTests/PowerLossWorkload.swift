import CofferCore
import CofferEngineTesting
import CofferTestKit
import Testing

@testable import CofferEngine

/// What the power-loss test knows about one key: its last acknowledged state and the writes to it that were not
/// acknowledged (each may or may not have reached the disk). `nil` stands for "absent".
struct KeyHistory: Sendable {
    var acknowledged: [UInt8]?
    var unacknowledged: [[UInt8]?] = []

    /// Every state a read may legally find after a power cut.
    var candidates: [[UInt8]?] { [acknowledged] + unacknowledged }
}

/// Counts the power-loss test prints.
struct PowerLossCounts: Sendable {
    var cycles = 0
    var cutsDuringWrites = 0
    var putsAcknowledged = 0
    var spilledPutsAcknowledged = 0
    var deletesAcknowledged = 0
    var readsChecked = 0
    var unacknowledged = 0
    var unacknowledgedFound = 0
    var keysVerified = 0
    var unsyncedBytes: Int64 = 0
    var unsyncedBytesKept: Int64 = 0
    var tornWrites = 0
    var entriesLost = 0
    var tornTailsSeen = 0
    var orphansSeen = 0
    var recoveriesCut = 0
    var compactedSegments = 0
    var unlinksUndone = 0

    mutating func add(_ other: PowerLossCounts) {
        putsAcknowledged += other.putsAcknowledged
        spilledPutsAcknowledged += other.spilledPutsAcknowledged
        deletesAcknowledged += other.deletesAcknowledged
        readsChecked += other.readsChecked
        unacknowledged += other.unacknowledged
        compactedSegments += other.compactedSegments
    }
}

/// One writer of the power-loss test: owns a few keys and puts (tiny, inline or spilled bodies) and deletes them one
/// at a time, reading some back and now and then running a compaction pass, until an operation fails because the
/// power is gone (or its budget runs out).
struct PowerLossWriter: Sendable {
    let engine: LogEngine
    let io: FaultInjectingFileIO
    let keys: [String]
    let seed: UInt64
    let operations: Int
    let inlineThreshold: Int

    /// Runs the writer; returns its keys' histories and its counts.
    func run(_ start: [String: KeyHistory]) async -> ([String: KeyHistory], PowerLossCounts) {
        var histories = start
        var counts = PowerLossCounts()
        var random = SplitMix64(seed: seed)
        for _ in 0..<operations {
            if random.next() % 12 == 0 {
                // Online compaction between writes: relocations go through the same group commit.
                do {
                    counts.compactedSegments += try await engine.compact(threshold: 0.25).segmentsCompacted
                } catch {
                    record(error, "compaction")
                    return (histories, counts)
                }
            }
            let key = keys[Int(random.next() % UInt64(keys.count))]
            let current = histories[key]!.acknowledged
            let choice = random.next() % 10
            if choice < 2, current != nil {
                do {
                    _ = try await engine.remove(key)
                    histories[key] = KeyHistory(acknowledged: nil)
                    counts.deletesAcknowledged += 1
                } catch {
                    record(error, key)
                    histories[key]!.unacknowledged.append(nil)
                    counts.unacknowledged += 1
                    return (histories, counts)
                }
                continue
            }
            let size: Int
            switch random.next() % 10 {
            case 0..<3: size = Int(random.next() % 64)
            case 3..<6: size = 64 + Int(random.next() % UInt64(inlineThreshold - 63))
            case 6..<9: size = inlineThreshold + 1 + Int(random.next() % 20_000)
            default: size = Format.spillBlockSize + Int(random.next() % UInt64(2 * Format.spillBlockSize))
            }
            let bytes = randomBytes(size, seed: random.next())
            let chunk = 512 + Int(random.next() % 16_384)
            do {
                try await engine.put(key, bytes, chunkSize: chunk)
                histories[key] = KeyHistory(acknowledged: bytes)
                counts.putsAcknowledged += 1
                if size > inlineThreshold { counts.spilledPutsAcknowledged += 1 }
            } catch {
                record(error, key)
                histories[key]!.unacknowledged.append(bytes)
                counts.unacknowledged += 1
                return (histories, counts)
            }
            if choice >= 8 {
                // Read-your-writes while the power is on.
                do {
                    let read = try await engine.get(key)
                    #expect(read == bytes, "\(key) read back wrong bytes before the cut")
                    counts.readsChecked += 1
                } catch {
                    record(error, key)
                    return (histories, counts)
                }
            }
        }
        return (histories, counts)
    }

    /// Before the cut nothing may fail.
    private func record(_ error: any Error, _ key: String) {
        if !io.isPowerCut { Issue.record("\(key) failed with the power on: \(error)") }
    }
}
