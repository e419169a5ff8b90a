import CofferCore
import CofferEngineTesting
import Testing

@testable import CofferEngine

/// A kill -9 followed, later, by a power cut. The killed process leaves a batch in the page cache that it wrote but
/// never fsynced (so never acknowledged). The next start indexes that batch and serves it; unless recovery makes it
/// durable before serving it, a power cut afterwards takes back what readers already saw, and, if the new process
/// had moved on to a new segment, tears it inside a sealed segment, where recovery calls it corruption. Recovery
/// therefore fdatasyncs the last segment before serving it.
@Suite("Power loss after a kill: what the next start serves must be durable")
struct PowerLossAfterKillTests {
    static func configuration(_ directory: TestDirectory, fileIO: (any FileIO)? = nil) -> EngineConfiguration {
        testConfiguration(directory, fileIO: fileIO) {
            $0.segmentSize = 4096
            $0.compactionInterval = nil
        }
    }

    /// Writes three records, then a fourth whose fdatasync never happens (the process dies after its pwrite), and
    /// starts a second engine on the same page cache, which reads the fourth and writes a fifth (into a new segment).
    /// Returns the seam (power still on) and the fourth record's bytes.
    static func killThenRestart(_ directory: TestDirectory) async throws -> (FaultInjectingFileIO, [UInt8]) {
        let io = FaultInjectingFileIO(tracksPowerLoss: true)
        let victim = randomBytes(900, seed: 4)
        try await withEngine(configuration(directory, fileIO: io)) { engine async throws in
            for i in 0..<3 { try await engine.put("k\(i)", randomBytes(900, seed: UInt64(i))) }
            // Quiet engine: the put's pwrite is call 1, its fdatasync call 2, where the process "dies".
            io.update { $0.callsUntilPowerCut = 2 }
            await #expect(throws: StoreError.self) { try await engine.put("victim", victim) }
        }
        io.resumeAfterProcessCrash()
        try await withEngine(configuration(directory, fileIO: io)) { engine async throws in
            #expect(try await engine.get("victim") == victim, "the restarted engine serves the unsynced record")
            try await engine.put("after", randomBytes(900, seed: 5))
            #expect(Files.list(directory.segments).count == 2, "the new write went to a new segment")
        }
        io.cutPower()
        return (io, victim)
    }

    @Test("a record the restarted engine served is still there after a power cut")
    func servedRecordSurvives() async throws {
        try await withTestDirectory { directory async throws in
            let (io, victim) = try await Self.killThenRestart(directory)
            var options = PowerLossOptions()
            options.keepUnsyncedPrefix = false
            _ = try io.applyPowerLoss(seed: 1, options: options)
            try await withEngine(Self.configuration(directory)) { engine async throws in
                #expect(try await engine.get("after") == randomBytes(900, seed: 5), "acknowledged")
                let found = try await engine.getIfPresent("victim")
                #expect(found == victim, "the record the restarted engine served is gone")
            }
        }
    }

    @Test("the power cut does not leave a torn record inside a sealed segment")
    func noTornSealedSegment() async throws {
        // Without the sync at recovery, some of these seeds tear the record the restarted engine served inside what
        // is by then a sealed segment. With it, there is nothing unsynced left to tear.
        for seed in 0..<16 {
            try await withTestDirectory { directory async throws in
                let (io, victim) = try await Self.killThenRestart(directory)
                var options = PowerLossOptions()
                options.zeroFillTornWrite = false
                #expect(try io.applyPowerLoss(seed: UInt64(seed), options: options).tornWrites == 0)
                let report = try Verifier(directory: directory.path).verify()
                #expect(report.status != .damaged, "\(report.regions)")
                try await withEngine(Self.configuration(directory)) { engine async throws in
                    #expect(try await engine.get("after") == randomBytes(900, seed: 5), "acknowledged")
                    #expect(try await engine.getIfPresent("victim") == victim, "served before the cut")
                    #expect(engine.recovery.corruptRegions == 0)
                }
            }
        }
    }
}
