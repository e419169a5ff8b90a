import CofferCore
import Testing

@testable import CofferEngine

/// Conditional writes and deletes, checked atomically with the write.
@Suite("API: write conditions")
struct WriteConditionTests {
    @Test(".ifAbsent, .ifPresent and .ifMatch on writes")
    func writeConditions() async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                let v1 = randomBytes(100, seed: 1)
                await #expect(throws: StoreError.preconditionFailed) {
                    try await engine.put("k", v1, options: WriteOptions(condition: .ifPresent))
                }
                await #expect(throws: StoreError.preconditionFailed) {
                    try await engine.put("k", v1, options: WriteOptions(condition: .ifMatch(["*"])))
                }
                await #expect(throws: StoreError.notFound) { try await engine.get("k") }

                let created = try await engine.put("k", v1, options: WriteOptions(condition: .ifAbsent))
                #expect(created.created)
                await #expect(throws: StoreError.alreadyExists) {
                    try await engine.put("k", [9], options: WriteOptions(condition: .ifAbsent))
                }
                #expect(try await engine.get("k") == v1)

                let v2 = randomBytes(100, seed: 2)
                let replaced = try await engine.put("k", v2, options: WriteOptions(condition: .ifPresent))
                #expect(!replaced.created)
                #expect(try await engine.get("k") == v2)

                let wrong = "0123456789abcdef0123456789abcdef"
                await #expect(throws: StoreError.preconditionFailed) {
                    try await engine.put("k", [9], options: WriteOptions(condition: .ifMatch([wrong])))
                }
                #expect(try await engine.get("k") == v2)
                let v3 = randomBytes(100, seed: 3)
                let etag = replaced.info.etag
                try await engine.put("k", v3, options: WriteOptions(condition: .ifMatch([wrong, etag])))
                #expect(try await engine.get("k") == v3)
                try await engine.put("k", v1, options: WriteOptions(condition: .ifMatch(["*"])))
                #expect(try await engine.get("k") == v1)
            }
        }
    }

    @Test("delete: returns the removed version, then not found; conditions hold")
    func deletes() async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                let written = try await engine.put("k", randomBytes(10_000, seed: 4))
                await #expect(throws: StoreError.preconditionFailed) {
                    try await engine.remove("k", condition: .ifMatch(["ffffffffffffffffffffffffffffffff"]))
                }
                #expect(try await engine.get("k") == randomBytes(10_000, seed: 4))
                let removed = try await engine.remove("k", condition: .ifMatch([written.info.etag]))
                #expect(removed == written.info)
                await #expect(throws: StoreError.notFound) { try await engine.get("k") }
                await #expect(throws: StoreError.notFound) { try await engine.remove("k") }
                await #expect(throws: StoreError.notFound) { try await engine.remove("never") }
                #expect(Files.list(directory.blobs).isEmpty)
            }
            try await withEngine(testConfiguration(directory)) { engine async throws in
                await #expect(throws: StoreError.notFound) { try await engine.get("k") }
                #expect(engine.recovery.liveBlobs == 0)
            }
        }
    }

    @Test("concurrent .ifAbsent writes on one key: exactly one succeeds", arguments: [100, 20_000])
    func concurrentIfAbsent(size: Int) async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                let contenders = 20
                let outcomes = try await withThrowingTaskGroup(of: (Int, StoreError?).self) { group in
                    for i in 0..<contenders {
                        group.addTask {
                            do {
                                let value = randomBytes(size, seed: UInt64(i))
                                try await engine.put("contended", value, options: WriteOptions(condition: .ifAbsent))
                                return (i, nil)
                            } catch let error as StoreError {
                                return (i, error)
                            }
                        }
                    }
                    return try await group.reduce(into: [(Int, StoreError?)]()) { $0.append($1) }
                }
                let winners = outcomes.filter { $0.1 == nil }.map(\.0)
                #expect(winners.count == 1)
                #expect(outcomes.filter { $0.1 != nil }.allSatisfy { $0.1 == .alreadyExists })
                let winner = try #require(winners.first)
                #expect(try await engine.get("contended") == randomBytes(size, seed: UInt64(winner)))
                // The losers' spill files are gone.
                #expect(Files.list(directory.blobs).count == (size > testInlineThreshold ? 1 : 0))
            }
        }
    }
}
