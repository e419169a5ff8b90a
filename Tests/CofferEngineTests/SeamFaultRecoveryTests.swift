import CofferCore
import CofferEngineTesting
import NIOCore
import Testing

@testable import CofferEngine

/// Faults while recovery runs: an I/O error must make the open fail cleanly, never be taken for a torn tail (which
/// would cut acknowledged records); a failed fsync while cutting a torn tail fails the open and a retry finishes the
/// job.
@Suite("Seam faults during recovery")
struct SeamFaultRecoveryTests {
    struct Scenario: Sendable, CustomTestStringConvertible {
        var name: String
        var segmentSize: Int64
        var blobs: Int
        var blobSize: Int
        var testDescription: String { name }
    }

    static let scenarios = [
        // One segment larger than the 8 MiB scan window: the last segment is read in several windows.
        Scenario(name: "one 10 MiB segment", segmentSize: 64 << 20, blobs: 10, blobSize: 1 << 20),
        // Several small segments: sealed ones and the last one.
        Scenario(name: "small segments", segmentSize: 4096, blobs: 12, blobSize: 1000),
    ]

    /// Writes the scenario's blobs inline, closes, and appends a torn tail (bytes that hold no record) to the last
    /// segment. Returns the expected blobs and the tail.
    private static func prepare(
        _ directory: TestDirectory, _ scenario: Scenario
    ) async throws -> ([String: [UInt8]], [UInt8]) {
        var expected: [String: [UInt8]] = [:]
        try await withEngine(configuration(directory, scenario)) { engine async throws in
            for i in 0..<scenario.blobs {
                expected["k\(i)"] = randomBytes(scenario.blobSize, seed: UInt64(i))
                try await engine.put("k\(i)", expected["k\(i)"]!, chunkSize: 256 * 1024)
            }
        }
        let tail = randomBytes(5000, seed: 99)
        let last = Files.list(directory.segments).last!
        try Files.append(directory.segments + "/" + last, tail)
        return (expected, tail)
    }

    private static func configuration(
        _ directory: TestDirectory, _ scenario: Scenario, fileIO: (any FileIO)? = nil
    ) -> EngineConfiguration {
        testConfiguration(directory, fileIO: fileIO) {
            $0.inlineThreshold = 1 << 20
            $0.segmentSize = scenario.segmentSize
            $0.compactionInterval = nil
        }
    }

    private static func segments(_ directory: TestDirectory) throws -> [String: [UInt8]] {
        var files: [String: [UInt8]] = [:]
        for name in Files.list(directory.segments) { files[name] = try Files.read(directory.segments + "/" + name) }
        return files
    }

    @Test(
        "an I/O error at any read of recovery fails the open; no segment changes, nothing is cut", arguments: scenarios)
    func readErrorAtEveryRead(_ scenario: Scenario) async throws {
        try await withTestDirectory { directory async throws in
            let (expected, tail) = try await Self.prepare(directory, scenario)
            let before = try Self.segments(directory)
            var failures = 0
            var reads = 0
            // Fail the first read of the segments, then the second, ... until the open gets through.
            while true {
                var rules = FaultInjectingFileIO.Rules()
                rules.pathFilter = "/segments/"
                rules.readsBeforeFailure = reads
                rules.failingReads = 1
                let io = FaultInjectingFileIO(rules: rules)
                do {
                    let engine = try await openEngine(Self.configuration(directory, scenario, fileIO: io))
                    try await engine.close()
                    break
                } catch {
                    failures += 1
                    #expect(error is IOError || (error as? StoreError) == .io, "read \(reads): \(error)")
                    #expect(try Self.segments(directory) == before, "read \(reads): a segment changed")
                    // A copy that was being made when the read failed is at most a prefix of the tail.
                    for name in Files.list(directory.recovery) {
                        let copy = try Files.read(directory.recovery + "/" + name)
                        #expect(Array(tail.prefix(copy.count)) == copy, "read \(reads): \(name)")
                    }
                }
                reads += 1
                #expect(reads < 1000)
                if reads >= 1000 { break }
            }
            print(
                "recovery read faults (\(scenario.name)): each of \(failures) reads failed in turn, open refused each time"
            )
            #expect(failures >= 3, "recovery read the segments \(failures) times")
            try await withEngine(Self.configuration(directory, scenario)) { engine async throws in
                #expect(engine.recovery.bytesCut == 0, "the successful open above already cut the tail")
                for (key, bytes) in expected { #expect(try await engine.get(key) == bytes, "\(key)") }
            }
            let cuts = Files.list(directory.recovery).map { try? Files.read(directory.recovery + "/" + $0) }
            #expect(cuts.contains { $0 == tail }, "one complete copy of the tail")
        }
    }

    @Test("a failed fsync of the tail's copy fails the open before the cut; a retry cuts it")
    func copySyncFails() async throws {
        try await withTestDirectory { directory async throws in
            let scenario = Self.scenarios[1]
            let (expected, tail) = try await Self.prepare(directory, scenario)
            let before = try Self.segments(directory)
            for rule in ["file", "directory"] {
                var rules = FaultInjectingFileIO.Rules()
                rules.pathFilter = "/recovery/"
                if rule == "file" { rules.failingSyncs = 1 } else { rules.failingDirectorySyncs = 1 }
                let io = FaultInjectingFileIO(rules: rules)
                await #expect(throws: (any Error).self, "\(rule)") {
                    try await openEngine(Self.configuration(directory, scenario, fileIO: io))
                }
                #expect(try Self.segments(directory) == before, "\(rule)")
            }
            try await withEngine(Self.configuration(directory, scenario)) { engine async throws in
                #expect(engine.recovery.bytesCut == Int64(tail.count))
                for (key, bytes) in expected { #expect(try await engine.get(key) == bytes, "\(key)") }
            }
        }
    }

    @Test("a failed fdatasync after the cut fails the open; a retry finds the tail gone and every record kept")
    func truncateSyncFails() async throws {
        try await withTestDirectory { directory async throws in
            let scenario = Self.scenarios[1]
            let (expected, tail) = try await Self.prepare(directory, scenario)
            let last = Files.list(directory.segments).last!
            let size = try Files.size(directory.segments + "/" + last)
            var rules = FaultInjectingFileIO.Rules()
            rules.pathFilter = "/segments/"
            rules.failingSyncs = 1
            let io = FaultInjectingFileIO(rules: rules)
            await #expect(throws: (any Error).self) {
                try await openEngine(Self.configuration(directory, scenario, fileIO: io))
            }
            #expect(try Files.size(directory.segments + "/" + last) == size - Int64(tail.count))
            try await withEngine(Self.configuration(directory, scenario)) { engine async throws in
                #expect(engine.recovery.bytesCut == 0)
                for (key, bytes) in expected { #expect(try await engine.get(key) == bytes, "\(key)") }
            }
        }
    }

    @Test("a failed fsync of the data directory at open fails the open cleanly")
    func rootSyncFails() async throws {
        try await withTestDirectory { directory async throws in
            let scenario = Self.scenarios[1]
            let (expected, _) = try await Self.prepare(directory, scenario)
            let before = try Self.segments(directory)
            var rules = FaultInjectingFileIO.Rules()
            rules.failingDirectorySyncs = 1
            let io = FaultInjectingFileIO(rules: rules)
            await #expect(throws: (any Error).self) {
                try await openEngine(Self.configuration(directory, scenario, fileIO: io))
            }
            #expect(try Self.segments(directory) == before)
            try await withEngine(Self.configuration(directory, scenario)) { engine async throws in
                for (key, bytes) in expected { #expect(try await engine.get(key) == bytes, "\(key)") }
            }
        }
    }
}
