import CofferCore
import Foundation
import Testing

@testable import CofferEngine

/// `coffer verify` on damage beyond single records: a damaged segment header (sealed, or the last segment), a missing
/// spill file, and crash leftovers only.
@Suite("Verify: segment headers, missing spill files, leftovers")
struct VerifySegmentTests {
    static func configuration(_ directory: TestDirectory) -> EngineConfiguration {
        testConfiguration(directory) {
            $0.segmentSize = 4096
            $0.compactionInterval = nil
        }
    }

    /// Twelve keys of 900 bytes (four records per segment, so three segments), then `k0` overwritten: its newest
    /// version is in the last segment, its previous one in the first.
    static func populate(_ directory: TestDirectory) async throws -> [String: IndexEntry] {
        try await withEngine(configuration(directory)) { engine async throws in
            for i in 0..<12 { try await engine.put("k\(i)", randomBytes(900, seed: UInt64(i))) }
            try await engine.put("k0", randomBytes(900, seed: 100))
            return engine.state.withLock {
                Dictionary(uniqueKeysWithValues: $0.index.map { ($0.key.rawValue, $0.value) })
            }
        }
    }

    @Test("a damaged header of a sealed segment: every key whose newest record is in it is damaged; repair deletes")
    func sealedSegmentHeader() async throws {
        try await withTestDirectory { directory async throws in
            let index = try await Self.populate(directory)
            let inSecond = Set(index.filter { $0.value.segment == 2 }.map(\.key))
            #expect(inSecond.count == 4)
            try Files.corrupt(directory.segment(2), at: 3)
            let report = try Verifier(directory: directory.path).verify()
            #expect(report.status == .damaged)
            #expect(report.regions.map(\.kind) == [.segmentHeader])
            #expect(
                report.regions.first?.records.count == 4 && report.regions.first?.records.allSatisfy(\.intact) == true)
            #expect(Set(report.damagedBlobs.map(\.key)) == inSecond)
            #expect(report.damagedBlobs.allSatisfy { $0.problem == .segmentHeaderDamaged && $0.segment == 2 })

            let repair = try await Verifier(directory: directory.path).repair(logger: quietLogger)
            #expect(repair.after.status == .clean)
            #expect(Set(repair.keysDeleted + repair.keysAlreadyAbsent) == inSecond)
            try await withEngine(Self.configuration(directory)) { engine async throws in
                for i in 0..<12 {
                    let expected: [UInt8]? =
                        inSecond.contains("k\(i)") ? nil : randomBytes(900, seed: i == 0 ? 100 : UInt64(i))
                    #expect(try await engine.getIfPresent("k\(i)") == expected, "k\(i)")
                }
            }
        }
    }

    @Test("a damaged header of the last segment: its records would be moved away at the next start; repair deletes")
    func lastSegmentHeader() async throws {
        try await withTestDirectory { directory async throws in
            let index = try await Self.populate(directory)
            let last = index.values.map(\.segment).max()!
            let inLast = Set(index.filter { $0.value.segment == last }.map(\.key))
            #expect(inLast.contains("k0"))
            try Files.corrupt(directory.segment(last), at: 20)
            let report = try Verifier(directory: directory.path).verify()
            #expect(report.status == .damaged && report.regions.map(\.kind) == [.segmentHeader])
            let k0 = try #require(report.damagedBlobs.first { $0.key == "k0" })
            #expect(k0.detail.contains("serves version"), "the older k0 would come back: \(k0.detail)")
            let repair = try await Verifier(directory: directory.path).repair(logger: quietLogger)
            #expect(repair.after.status == .clean, "\(repair.after.regions)")
            #expect(repair.recoveryBytesCut > 0, "recovery moved the segment to recovery/")
            try await withEngine(Self.configuration(directory)) { engine async throws in
                for key in inLast { #expect(try await engine.getIfPresent(key) == nil, "\(key)") }
                #expect(try await engine.get("k1") == randomBytes(900, seed: 1))
            }
        }
    }

    @Test("a missing spill file: reported, exit 1; repair deletes the key and notes it in the manifest")
    func missingSpill() async throws {
        try await withTestDirectory { directory async throws in
            let spill = try await withEngine(testConfiguration(directory)) { engine async throws in
                try await engine.put("big", randomBytes(50_000, seed: 1))
                try await engine.put("small", [1, 2, 3])
                return try #require(engine.lookup("big")).spillID
            }
            try FileManager.default.removeItem(atPath: directory.spill(spill))
            let report = try Verifier(directory: directory.path).verify()
            #expect(report.exitCode == 1)
            #expect(report.damagedBlobs.map(\.problem) == [.spillFileMissing])
            let repair = try await Verifier(directory: directory.path).repair(logger: quietLogger)
            #expect(repair.keysDeleted == ["big"] && repair.after.status == .clean)
            let manifest = String(decoding: try Files.read(directory.path + "/quarantine/MANIFEST"), as: UTF8.self)
            #expect(manifest.contains("missing-spill \(String(format: "%016llx", spill))"))
            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(try await engine.getIfPresent("big") == nil)
                #expect(try await engine.get("small") == [1, 2, 3])
            }
        }
    }

    @Test("crash leftovers only (torn tail, orphan and partial spill files): exit 2, no damaged blob; repair cleans")
    func leftovers() async throws {
        try await withTestDirectory { directory async throws in
            _ = try await Self.populate(directory)
            try Files.write(directory.blobs + "/00000000000000aa.blob", [1])
            try Files.write(directory.blobs + "/00000000000000ab.blob.partial", [2])
            // Half of a record: a valid header whose record runs past the end of the file.
            let last = Files.list(directory.segments).last!
            try Files.append(directory.segments + "/" + last, Array(try Files.read(directory.segment(1))[32..<100]))
            let report = try Verifier(directory: directory.path).verify()
            #expect(report.status == .crashLeftovers && report.exitCode == 2)
            #expect(report.damagedBlobs.isEmpty)
            #expect(report.orphanSpillFiles == ["00000000000000aa.blob", "00000000000000ab.blob.partial"])
            #expect(report.regions.map(\.kind) == [.tornTail])
            #expect(report.regions.first?.records.first?.key == "k0", "the torn record's key is read from its header")
            let repair = try await Verifier(directory: directory.path).repair(logger: quietLogger)
            #expect(repair.quarantined.isEmpty, "leftovers are not damage: nothing quarantined")
            #expect(repair.keysDeleted.isEmpty && repair.orphansRemoved == 2 && repair.recoveryBytesCut == 68)
            #expect(repair.after.status == .clean)
        }
    }
}
