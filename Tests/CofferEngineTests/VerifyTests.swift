import CofferCore
import CofferEngineTesting
import Foundation
import NIOCore
import Testing

@testable import CofferEngine

/// `coffer verify` (the ``Verifier``): bit rot in segments and spill files is reported by key and location, nothing is
/// changed without `--repair`, and a repair quarantines the damage and makes the damaged keys read as not found.
@Suite("Verify: offline check and repair")
struct VerifyTests {
    /// Where the damage goes, and the keys that must come through unharmed.
    struct Layout {
        /// key -> the bytes a read must return (nil: not found)
        var expected: [String: [UInt8]?]
        var victims: [String: IndexEntry]
        var olderInline: [UInt8]
    }

    static let victims = ["inline/victim", "header/victim", "spill/block", "spill/table"]

    /// Writes undamaged keys around four victims (two inline, two spilled), each victim followed by more records so
    /// that no damage sits in the torn-tail position.
    static func populate(_ directory: TestDirectory) async throws -> Layout {
        var expected: [String: [UInt8]?] = [:]
        let older = randomBytes(1500, seed: 100)
        let victims = try await withEngine(testConfiguration(directory)) { engine async throws in
            func put(_ key: String, _ bytes: [UInt8]) async throws {
                try await engine.put(key, bytes)
                expected[key] = bytes
            }
            try await put("ok/small", randomBytes(10, seed: 1))
            try await engine.put("inline/victim", older)
            try await put("ok/spilled", randomBytes(3 * Format.spillBlockSize + 17, seed: 2))
            try await put("inline/victim", randomBytes(2000, seed: 3))
            try await put("ok/replaced", randomBytes(50, seed: 4))
            try await put("header/victim", randomBytes(700, seed: 5))
            try await put("ok/deleted", randomBytes(60, seed: 6))
            _ = try await engine.remove("ok/deleted")
            expected["ok/deleted"] = .some(nil)
            try await put("spill/block", randomBytes(3 * Format.spillBlockSize + 100, seed: 7))
            try await put("spill/table", randomBytes(100_000, seed: 8))
            try await put("ok/replaced", randomBytes(70, seed: 9))
            try await put("ok/last", randomBytes(300, seed: 10))
            return try Dictionary(uniqueKeysWithValues: Self.victims.map { ($0, try #require(engine.lookup($0))) })
        }
        return Layout(expected: expected, victims: victims, olderInline: older)
    }

    /// Flips one byte in each victim: inline data, a record header field, a spill data block, the spill block table.
    static func damage(_ directory: TestDirectory, _ layout: Layout) throws {
        let inline = layout.victims["inline/victim"]!
        try Files.corrupt(
            directory.segment(inline.segment), at: inline.recordOffset + Int64(inline.recordLength) - 100)
        let header = layout.victims["header/victim"]!
        try Files.corrupt(directory.segment(header.segment), at: header.recordOffset + 9)
        let block = layout.victims["spill/block"]!
        try Files.corrupt(
            directory.spill(block.spillID), at: Int64(Format.spillHeaderSize + 2 * Format.spillBlockSize + 5))
        let table = layout.victims["spill/table"]!
        try Files.corrupt(directory.spill(table.spillID), at: Int64(Format.spillHeaderSize) + table.size + 2)
    }

    /// Every file under `path` (relative name -> bytes).
    static func snapshot(_ path: String) throws -> [String: [UInt8]] {
        var files: [String: [UInt8]] = [:]
        let enumerator = FileManager.default.enumerator(atPath: path)
        while let name = enumerator?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path + "/" + name, isDirectory: &isDirectory),
                !isDirectory.boolValue
            {
                files[name] = try Files.read(path + "/" + name)
            }
        }
        return files
    }

    @Test("a clean directory verifies clean (exit 0), and nothing is changed")
    func clean() async throws {
        try await withTestDirectory { directory async throws in
            let layout = try await Self.populate(directory)
            let before = try Self.snapshot(directory.path)
            let report = try Verifier(directory: directory.path).verify()
            #expect(report.status == .clean && report.exitCode == 0)
            #expect(report.damagedBlobs.isEmpty && report.regions.isEmpty && report.orphanSpillFiles.isEmpty)
            #expect(report.liveBlobs == layout.expected.values.filter { $0 != nil }.count)
            #expect(report.spillFilesVerified == 3)
            #expect(report.spillBlocksVerified == 4 + 4 + 2)
            #expect(try Self.snapshot(directory.path) == before)
        }
    }

    @Test("bit rot in record data, a record header, a spill block and a spill table: each key reported, exit 1")
    func reportsDamage() async throws {
        try await withTestDirectory { directory async throws in
            let layout = try await Self.populate(directory)
            try Self.damage(directory, layout)
            let before = try Self.snapshot(directory.path)
            let report = try Verifier(directory: directory.path).verify()
            #expect(report.status == .damaged && report.exitCode == 1)
            let byKey = Dictionary(uniqueKeysWithValues: report.damagedBlobs.map { ($0.key, $0) })
            #expect(Set(byKey.keys) == Set(Self.victims))
            for (key, entry) in layout.victims {
                let blob = try #require(byKey[key], "\(key)")
                #expect(blob.segment == entry.segment && blob.offset == entry.recordOffset, "\(key)")
                if entry.isSpilled {
                    #expect(blob.problem == .spillFileDamaged && blob.spillID == entry.spillID, "\(key)")
                } else {
                    #expect(blob.problem == .recordDamaged, "\(key)")
                }
            }
            #expect(byKey["spill/block"]?.detail.contains("block 2") == true)
            #expect(byKey["spill/table"]?.detail.contains("block table") == true)
            #expect(byKey["inline/victim"]?.sequence == layout.victims["inline/victim"]?.sequence)
            #expect(byKey["inline/victim"]?.detail.contains("serves version") == true, "an older version is stale")
            // The two damaged records are two corrupt regions of exactly their length.
            let regions = report.regions.sorted { $0.offset < $1.offset }
            #expect(regions.map(\.kind) == [.corrupt, .corrupt])
            for (region, key) in zip(regions, ["inline/victim", "header/victim"]) {
                let entry = layout.victims[key]!
                #expect(region.offset == entry.recordOffset && region.length == Int64(entry.recordLength))
                #expect(region.records.first?.key == key)
                #expect(region.records.first?.headerIntact == (key == "inline/victim"))
            }
            #expect(try Self.snapshot(directory.path) == before, "verify without --repair changes nothing")
        }
    }

    @Test("repair: damage quarantined, damaged keys not found, the rest byte-exact, a second verify is clean")
    func repair() async throws {
        try await withTestDirectory { directory async throws in
            let layout = try await Self.populate(directory)
            try Self.damage(directory, layout)
            let damagedSegment = try Files.read(directory.segment(1))
            let damagedSpills = try layout.victims.values.filter(\.isSpilled).map {
                ($0.spillID, try Files.read(directory.spill($0.spillID)))
            }
            let report = try await Verifier(directory: directory.path).repair(logger: quietLogger)
            #expect(report.before.status == .damaged)
            #expect(report.after.status == .clean && report.after.exitCode == 0)
            #expect(report.after.regions.count == 2 && report.after.regions.allSatisfy(\.quarantined))
            #expect(Set(report.keysDeleted) == ["inline/victim", "spill/block", "spill/table"])
            #expect(report.keysAlreadyAbsent == ["header/victim"])

            // The quarantine holds the damaged bytes: both record ranges and both spill files.
            let quarantine = directory.path + "/quarantine"
            let names = Files.list(quarantine)
            #expect(names.count == 5 && names.contains("MANIFEST"))
            for key in ["inline/victim", "header/victim"] {
                let entry = layout.victims[key]!
                let name = try #require(names.first { $0.hasPrefix("0000000000000001-\(entry.recordOffset)-") })
                let range = Int(entry.recordOffset)..<Int(entry.recordOffset) + Int(entry.recordLength)
                #expect(try Files.read(quarantine + "/" + name) == Array(damagedSegment[range]), "\(key)")
            }
            for (id, bytes) in damagedSpills {
                let name = try #require(names.first { $0.hasPrefix(String(format: "%016llx-", id)) })
                #expect(try Files.read(quarantine + "/" + name) == bytes)
                #expect(!Files.exists(directory.spill(id)), "the damaged spill file left blobs/")
            }
            let manifest = String(decoding: try Files.read(quarantine + "/MANIFEST"), as: UTF8.self)
            #expect(manifest.split(separator: "\n").filter { !$0.hasPrefix("#") }.count == 4)

            try await withEngine(testConfiguration(directory)) { engine async throws in
                for key in Self.victims {
                    await #expect(throws: StoreError.notFound, "\(key)") { try await engine.get(key) }
                }
                for (key, bytes) in layout.expected where !Self.victims.contains(key) {
                    #expect(try await engine.getIfPresent(key) == bytes, "\(key)")
                }
            }
            let again = try Verifier(directory: directory.path).verify()
            #expect(again.status == .clean && again.damagedBlobs.isEmpty)
            // A second repair finds nothing to do and changes nothing.
            let before = try Self.snapshot(directory.path)
            let second = try await Verifier(directory: directory.path).repair(logger: quietLogger)
            #expect(second.before.status == .clean && second.quarantined.isEmpty)
            #expect(try Self.snapshot(directory.path) == before)
        }
    }

    @Test("without a repair, a restart serves the older version of a key whose newest record rotted")
    func staleReadWithoutRepair() async throws {
        try await withTestDirectory { directory async throws in
            let layout = try await Self.populate(directory)
            try Self.damage(directory, layout)
            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(try await engine.get("inline/victim") == layout.olderInline)
                await #expect(throws: StoreError.corrupt) { try await engine.get("spill/table") }
            }
        }
    }

    @Test("refuses to run while a node holds the directory")
    func refusesWhileInUse() async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                try await engine.put("k", [1])
                #expect(throws: StoreError.unavailable) { try Verifier(directory: directory.path).verify() }
                await #expect(throws: StoreError.unavailable) {
                    try await Verifier(directory: directory.path).repair(logger: quietLogger)
                }
            }
            #expect(try Verifier(directory: directory.path).verify().status == .clean)
        }
    }

    @Test("an I/O error while reading stops the check; it is not reported as damage")
    func readErrorIsNotDamage() async throws {
        try await withTestDirectory { directory async throws in
            _ = try await Self.populate(directory)
            for filter in ["/segments/", "/blobs/"] {
                var rules = FaultInjectingFileIO.Rules()
                rules.pathFilter = filter
                rules.failingReads = 1
                let io = FaultInjectingFileIO(rules: rules)
                #expect(throws: IOError.self, "\(filter)") { try Verifier(directory: directory.path, io: io).verify() }
            }
        }
    }
}
