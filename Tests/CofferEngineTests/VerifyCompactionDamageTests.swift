import CofferCore
import NIOCore
import Testing

@testable import CofferEngine

/// Damage that `coffer verify` reports, met by online compaction before anyone repaired it. Recovery steps over a
/// damaged record whose header is intact (its bytes are data, even where they look like records); compaction must do
/// the same, or it relocates a record that only exists inside another blob's bytes.
/// Searching byte by byte after a damaged record would relocate a tombstone carried inside a blob as a live one, with
/// its own (higher) sequence number, and a later acknowledged put of that key would lose to it at the next restart.
@Suite("Verify: damaged records and compaction")
struct VerifyCompactionDamageTests {
    @Test("a tombstone inside a damaged blob's bytes is not relocated; a later put of its key survives a restart")
    func embeddedTombstone() async throws {
        try await withTestDirectory { directory async throws in
            let configuration = testConfiguration(directory) {
                $0.segmentSize = 4096
                $0.compactionInterval = nil
            }
            // A blob that holds a valid tombstone record (say, a backup of a segment) with a high sequence number.
            var embedded = ByteBuffer()
            LogRecord(sequence: 1 << 40, kind: .delete, key: "victim", meta: nil, data: nil).encode(into: &embedded)
            let carrier = randomBytes(300, seed: 1) + Array(embedded.readableBytesView) + randomBytes(300, seed: 2)
            let value = randomBytes(500, seed: 3)
            try await withEngine(configuration) { engine async throws in
                try await engine.put("carrier", carrier)
                let entry = try #require(engine.lookup("carrier"))
                for i in 0..<8 { try await engine.put("filler\(i)", randomBytes(900, seed: UInt64(10 + i))) }
                #expect(engine.state.withLock { $0.activeSegment } != entry.segment, "the carrier's segment is sealed")
                // Bit rot in the carrier's data, before the embedded record: its header stays intact.
                try Files.corrupt(directory.segment(entry.segment), at: entry.recordOffset + 150)
                let report = try await engine.compact(threshold: 0)
                #expect(report.segmentsKept == 1, "the carrier's segment stays (its key still points into it)")
                try await engine.put("victim", value)
                #expect(try await engine.get("victim") == value)
            }
            let verify = try Verifier(directory: directory.path).verify()
            #expect(verify.damagedBlobs.map(\.key) == ["carrier"])
            try await withEngine(configuration) { engine async throws in
                let found = try await engine.getIfPresent("victim")
                #expect(found == value, "the acknowledged put of victim is lost to a tombstone from inside a blob")
            }
        }
    }
}
