import CofferCore
import Testing

@testable import CofferEngine

/// Damage inside a sealed segment is corruption, not a torn tail: the bad record is skipped (and left on disk),
/// everything after it survives, and the key reads as its previous version or not found.
@Suite("Recovery: corruption in sealed segments")
struct SealedCorruptionRecoveryTests {
    /// Small segments, so a few hundred bytes per blob spread the log over several files.
    private func configuration(_ directory: TestDirectory) -> EngineConfiguration {
        testConfiguration(directory) { $0.segmentSize = 2048 }
    }

    private static func value(_ name: String, version: Int) -> [UInt8] {
        randomBytes(300, seed: UInt64(truncatingIfNeeded: name.hashValueStable &+ UInt64(version)))
    }

    /// Writes k00...k29 (one version each) and x (v1 early, v2 later), one write at a time, and returns the index.
    private func populate(_ directory: TestDirectory) async throws -> [String: IndexEntry] {
        try await withEngine(configuration(directory)) { engine async throws in
            try await engine.put("x", Self.value("x", version: 1))
            for i in 0..<30 {
                try await engine.put(Self.name(i), Self.value(Self.name(i), version: 1))
                if i == 15 { try await engine.put("x", Self.value("x", version: 2)) }
            }
            return engine.state.withLock {
                Dictionary(uniqueKeysWithValues: $0.index.map { ($0.key.rawValue, $0.value) })
            }
        }
    }

    /// The newest version `populate` wrote for `key`.
    private static func newest(_ key: String) -> [UInt8] {
        value(key, version: key == "x" ? 2 : 1)
    }

    private static func name(_ i: Int) -> String { "k\(i < 10 ? "0" : "")\(i)" }

    /// Keys whose records sit in `segment`, in file order.
    private func keys(in segment: UInt32, _ index: [String: IndexEntry]) -> [String] {
        index.filter { $0.value.segment == segment }.sorted { $0.value.recordOffset < $1.value.recordOffset }.map(\.key)
    }

    @Test("a damaged record in the middle and at the end of sealed segments is skipped; later records survive")
    func damagedDataBytes() async throws {
        try await withTestDirectory { directory async throws in
            let index = try await populate(directory)
            let segments = Set(index.values.map(\.segment)).sorted()
            #expect(segments.count >= 4)
            let active = segments.last!
            // x's newest version sits in a sealed segment, neither first nor last in it.
            let x = try #require(index["x"])
            #expect(x.segment != active)
            let xNeighbours = keys(in: x.segment, index)
            #expect(xNeighbours.first != "x" && xNeighbours.last != "x")
            // The last record of another sealed segment: damage there is a bad tail of a sealed segment.
            let tailSegment = try #require(segments.first { $0 != x.segment && $0 != active })
            let tailKey = try #require(keys(in: tailSegment, index).last)
            let tail = try #require(index[tailKey])

            let sizes = try segments.map { try Files.size(directory.segment($0)) }
            try Files.corrupt(directory.segment(x.segment), at: x.recordOffset + Int64(x.recordLength) - 40)
            try Files.corrupt(directory.segment(tailSegment), at: tail.recordOffset + Int64(tail.recordLength) - 40)

            for round in 0..<2 {
                try await withEngine(configuration(directory)) { engine async throws in
                    #expect(engine.recovery.corruptRegions == 2, "round \(round)")
                    #expect(engine.recovery.bytesCut == 0, "round \(round)")
                    // x falls back to the version before the damaged one; the only version of tailKey is gone.
                    #expect(try await engine.get("x") == Self.value("x", version: 1))
                    #expect(try await engine.getIfPresent(tailKey) == nil)
                    for i in 0..<30 where Self.name(i) != tailKey {
                        #expect(try await engine.get(Self.name(i)) == Self.value(Self.name(i), version: 1))
                    }
                    if round == 0 { try await engine.put("new", [1, 2, 3]) }
                    #expect(try await engine.get("new") == [1, 2, 3])
                }
            }
            // Nothing was cut or copied: the damaged bytes stay where they are for inspection.
            #expect(try segments.dropLast().map { try Files.size(directory.segment($0)) } == Array(sizes.dropLast()))
            #expect(Files.list(directory.recovery).isEmpty)
        }
    }

    @Test("a damaged record header in a sealed segment: the scan resynchronises on the next record")
    func damagedHeader() async throws {
        try await withTestDirectory { directory async throws in
            let index = try await populate(directory)
            let active = index.values.map(\.segment).max()!
            let sealed = Set(index.values.map(\.segment)).filter { $0 != active }.sorted()
            let segment = try #require(sealed.first { keys(in: $0, index).count >= 3 })
            let victims = keys(in: segment, index)
            let victim = try #require(victims.dropFirst().first { $0 != "x" })
            let entry = index[victim]!
            // The length field: without the header CRC, the scan would jump to a wrong offset.
            try Files.corrupt(directory.segment(segment), at: entry.recordOffset + 5, xor: 0x01)
            try await withEngine(configuration(directory)) { engine async throws in
                #expect(engine.recovery.corruptRegions == 1)
                #expect(try await engine.getIfPresent(victim) == nil)
                for key in victims where key != victim {
                    #expect(try await engine.get(key) == Self.newest(key), "\(key)")
                }
            }
        }
    }

    @Test("a sealed segment whose header is damaged is skipped whole; the other segments survive")
    func damagedSegmentHeader() async throws {
        try await withTestDirectory { directory async throws in
            let index = try await populate(directory)
            let segments = Set(index.values.map(\.segment)).sorted()
            let victim = segments[1]
            let lost = Set(keys(in: victim, index))
            #expect(!lost.isEmpty)
            let size = try Files.size(directory.segment(victim))
            try Files.corrupt(directory.segment(victim), at: Int64(Format.segmentHeaderSize - 1))
            try await withEngine(configuration(directory)) { engine async throws in
                #expect(engine.recovery.corruptRegions == 1)
                #expect(engine.recovery.bytesCut == 0)
                for key in index.keys {
                    if !lost.contains(key) {
                        #expect(try await engine.get(key) == Self.newest(key), "\(key)")
                    } else if key != "x" {
                        #expect(try await engine.getIfPresent(key) == nil, "\(key)")
                    }
                }
            }
            #expect(try Files.size(directory.segment(victim)) == size)
            #expect(Files.list(directory.recovery).isEmpty)
        }
    }

    @Test("damage in the middle of the last segment is corruption too: skipped, not cut")
    func damageInActiveSegment() async throws {
        try await withTestDirectory { directory async throws in
            let index = try await populate(directory)
            let active = index.values.map(\.segment).max()!
            let keys = keys(in: active, index).filter { $0 != "x" }
            #expect(keys.count >= 2)
            let victim = index[keys[0]]!
            let size = try Files.size(directory.segment(active))
            try Files.corrupt(directory.segment(active), at: victim.recordOffset + Int64(victim.recordLength) - 10)
            try await withEngine(configuration(directory)) { engine async throws in
                #expect(engine.recovery.corruptRegions == 1)
                #expect(engine.recovery.bytesCut == 0)
                #expect(try await engine.getIfPresent(keys[0]) == nil)
                for key in keys.dropFirst() { #expect(try await engine.get(key) == Self.newest(key)) }
            }
            #expect(try Files.size(directory.segment(active)) == size)
        }
    }
}

extension String {
    /// A hash that is the same in every run (Swift's `hashValue` is seeded per process).
    var hashValueStable: UInt64 {
        utf8.reduce(14_695_981_039_346_656_037) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 }
    }
}
