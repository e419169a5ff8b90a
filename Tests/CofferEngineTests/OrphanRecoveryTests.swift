import CofferCore
import Foundation
import Testing

@testable import CofferEngine

/// At open, spill files no live record references, and every unfinished `.blob.partial`, are removed and counted;
/// spill files of live blobs are kept.
@Suite("Recovery: orphan spill files")
struct OrphanRecoveryTests {
    @Test("a leftover .blob.partial and an unreferenced .blob are removed; referenced spills stay")
    func leftovers() async throws {
        try await withTestDirectory { directory async throws in
            let value = randomBytes(3 * testInlineThreshold, seed: 1)
            let spillID = try await withEngine(testConfiguration(directory)) { engine async throws in
                try await engine.put("live", value)
                return try #require(engine.lookup("live")).spillID
            }
            let partial = directory.blobs + "/00000000000000ff.blob.partial"
            let unreferenced = directory.spill(0x100)
            try Files.write(partial, randomBytes(1234, seed: 2))
            try Files.write(unreferenced, try Files.read(directory.spill(spillID)))
            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(engine.recovery.orphansRemoved == 2)
                #expect(engine.recovery.missingSpills == 0)
                #expect(engine.recovery.liveBlobs == 1)
                #expect(try await engine.get("live") == value)
                // New spill files never reuse an id seen on disk, even one that was just removed.
                try await engine.put("next", value)
                #expect(try #require(engine.lookup("next")).spillID > 0x100)
            }
            #expect(!Files.exists(partial))
            #expect(!Files.exists(unreferenced))
            #expect(Files.exists(directory.spill(spillID)))
            // A second open finds nothing more to remove.
            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(engine.recovery.orphansRemoved == 0)
            }
        }
    }

    @Test("a spill file of a replaced or deleted version (crash before its removal) is an orphan")
    func replacedVersions() async throws {
        try await withTestDirectory { directory async throws in
            let first = randomBytes(2 * testInlineThreshold, seed: 3)
            let second = randomBytes(2 * testInlineThreshold + 1, seed: 4)
            var saved: [(path: String, bytes: [UInt8])] = []
            try await withEngine(testConfiguration(directory)) { engine async throws in
                try await engine.put("replaced", first)
                try await engine.put("deleted", first)
                for name in ["replaced", "deleted"] {
                    let path = directory.spill(try #require(engine.lookup(name)).spillID)
                    saved.append((path, try Files.read(path)))
                }
                try await engine.put("replaced", second)
                _ = try await engine.remove("deleted")
                // The engine removes a replaced version's spill file once the new record is durable.
                for file in saved { #expect(!Files.exists(file.path)) }
            }
            // As if the process died between the commit and those removals.
            for file in saved { try Files.write(file.path, file.bytes) }
            try await withEngine(testConfiguration(directory)) { engine async throws in
                #expect(engine.recovery.orphansRemoved == 2)
                #expect(try await engine.get("replaced") == second)
                #expect(try await engine.getIfPresent("deleted") == nil)
            }
            for file in saved { #expect(!Files.exists(file.path)) }
            #expect(Files.list(directory.blobs).count == 1)
        }
    }
}
