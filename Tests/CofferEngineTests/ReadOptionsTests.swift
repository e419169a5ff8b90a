import CofferCore
import Testing

@testable import CofferEngine

/// Ranges and read conditions, on inline and spilled blobs alike.
@Suite("API: ranges and read conditions")
struct ReadOptionsTests {
    /// One inline and one spilled blob (several 64 KiB blocks), read in small chunks to cross block edges.
    static let cases: [(name: String, size: Int)] = [("inline", 3000), ("spilled", 3 * 65_536 + 1234)]

    private func configuration(_ directory: TestDirectory) -> EngineConfiguration {
        testConfiguration(directory) { $0.readChunkSize = Format.spillBlockSize }
    }

    @Test("satisfiable ranges return exactly the selected bytes", arguments: 0..<cases.count)
    func ranges(_ index: Int) async throws {
        let (name, size) = Self.cases[index]
        try await withTestDirectory { directory async throws in
            try await withEngine(configuration(directory)) { engine async throws in
                let value = randomBytes(size, seed: UInt64(size))
                try await engine.put(name, value)
                let n = Int64(size)
                let block = Int64(Format.spillBlockSize)
                let specs: [(ByteRangeSpec, Range<Int64>)] = [
                    (.from(first: 0, last: 0), 0..<1),
                    (.from(first: 10, last: 20), 10..<21),
                    (.from(first: n - 1, last: nil), (n - 1)..<n),
                    (.from(first: 5, last: n + 1000), 5..<n),
                    (.from(first: 0, last: nil), 0..<n),
                    (.suffix(1), (n - 1)..<n),
                    (.suffix(100), (n - 100)..<n),
                    (.suffix(n + 50), 0..<n),
                    (
                        .from(first: min(block - 3, n - 10), last: min(block + 2, n - 1)),
                        min(block - 3, n - 10)..<min(block + 3, n)
                    ),
                    (.from(first: 1, last: min(2 * block + 7, n - 1)), 1..<min(2 * block + 8, n)),
                ]
                for (spec, expected) in specs {
                    let read = try await engine.read(key(name), options: ReadOptions(range: spec))
                    #expect(read.decision == .partial(expected), "\(spec)")
                    #expect(read.info.size == n)
                    let bytes = try await collect(read.body)
                    #expect(bytes == Array(value[Int(expected.lowerBound)..<Int(expected.upperBound)]), "\(spec)")
                }
            }
        }
    }

    @Test("unsatisfiable ranges return no body", arguments: 0..<cases.count)
    func unsatisfiable(_ index: Int) async throws {
        let (name, size) = Self.cases[index]
        try await withTestDirectory { directory async throws in
            try await withEngine(configuration(directory)) { engine async throws in
                try await engine.put(name, randomBytes(size, seed: 1))
                try await engine.put("empty", [])
                let cases: [(String, ByteRangeSpec)] = [
                    (name, .from(first: Int64(size), last: nil)),
                    (name, .from(first: Int64(size) + 10, last: Int64(size) + 20)),
                    (name, .from(first: 5, last: 4)),
                    (name, .suffix(0)),
                    ("empty", .from(first: 0, last: nil)),
                    ("empty", .suffix(5)),
                ]
                for (target, spec) in cases {
                    let read = try await engine.read(key(target), options: ReadOptions(range: spec))
                    #expect(read.decision == .rangeNotSatisfiable, "\(target) \(spec)")
                    #expect(read.body == nil)
                }
            }
        }
    }

    @Test("If-None-Match and If-Match on reads", arguments: 0..<cases.count)
    func conditions(_ index: Int) async throws {
        let (name, size) = Self.cases[index]
        try await withTestDirectory { directory async throws in
            try await withEngine(configuration(directory)) { engine async throws in
                let value = randomBytes(size, seed: 2)
                let etag = try await engine.put(name, value).info.etag
                let other = "00000000000000000000000000000000"

                for tags in [[etag], ["*"], [other, etag]] {
                    let read = try await engine.read(key(name), options: ReadOptions(ifNoneMatch: tags))
                    #expect(read.decision == .notModified && read.body == nil, "\(tags)")
                    #expect(read.info.etag == etag)
                }
                let modified = try await engine.read(key(name), options: ReadOptions(ifNoneMatch: [other]))
                #expect(modified.decision == .full)
                #expect(try await collect(modified.body) == value)

                let failed = try await engine.read(key(name), options: ReadOptions(ifMatch: [other]))
                #expect(failed.decision == .preconditionFailed && failed.body == nil)
                for tags in [[etag], ["*"], [other, etag]] {
                    let read = try await engine.read(key(name), options: ReadOptions(ifMatch: tags))
                    #expect(read.decision == .full, "\(tags)")
                    #expect(try await collect(read.body) == value)
                }
                // A matching If-Match with a range is a partial read.
                let ranged = try await engine.read(
                    key(name), options: ReadOptions(range: .suffix(10), ifMatch: [etag]))
                #expect(try await collect(ranged.body) == Array(value.suffix(10)))
                // A missing key is not found, whatever the conditions.
                await #expect(throws: StoreError.notFound) {
                    try await engine.read(key("missing"), options: ReadOptions(ifNoneMatch: ["*"]))
                }
            }
        }
    }
}
