import CofferCore
import Testing

@testable import CofferEngine

/// Bodies that do not match what was announced, or that fail midway, store nothing and leave no spill file.
@Suite("API: body validation")
struct WriteValidationTests {
    static let sizes = [100, 20_000]

    /// Writes v1, runs `attempt` (which must throw `expected`), and checks v1 is intact and no extra file remains.
    private func expectRejected(
        _ expected: StoreError, size: Int, _ configure: (inout EngineConfiguration) -> Void = { _ in },
        _ attempt: @escaping (LogEngine, [UInt8]) async throws -> Void
    ) async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory, configure)) { engine async throws in
                let v1 = randomBytes(size, seed: 1)
                try await engine.put("k", v1)
                let files = Files.list(directory.blobs)
                await #expect(throws: expected) { try await attempt(engine, randomBytes(size, seed: 2)) }
                #expect(try await engine.get("k") == v1)
                #expect(Files.list(directory.blobs) == files)
                await #expect(throws: StoreError.notFound) { try await engine.get("fresh") }
            }
        }
    }

    @Test("a wrong Content-MD5 is a digest mismatch", arguments: sizes)
    func wrongMD5(size: Int) async throws {
        try await expectRejected(.digestMismatch, size: size) { engine, value in
            try await engine.put("k", value, options: WriteOptions(expectedMD5: [UInt8](repeating: 0, count: 16)))
        }
    }

    @Test("a wrong SHA-256 is a digest mismatch", arguments: sizes)
    func wrongSHA256(size: Int) async throws {
        try await expectRejected(.digestMismatch, size: size) { engine, value in
            try await engine.put("k", value, options: WriteOptions(expectedSHA256: [UInt8](repeating: 1, count: 32)))
        }
    }

    @Test("correct digests are accepted")
    func correctDigests() async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                let options = WriteOptions(
                    expectedMD5: bytes(hex: "900150983cd24fb0d6963f7d28e17f72"),
                    expectedSHA256: bytes(hex: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
                try await engine.put("abc", Array("abc".utf8), options: options)
                #expect(try await engine.get("abc") == Array("abc".utf8))
            }
        }
    }

    @Test("a body shorter or longer than its announced length is incomplete", arguments: sizes)
    func lengthMismatch(size: Int) async throws {
        for delta: Int64 in [-1, 1] {
            try await expectRejected(.incompleteBody, size: size) { engine, value in
                try await engine.put("k", value, options: WriteOptions(expectedLength: Int64(size) + delta))
            }
        }
    }

    @Test("a negative announced length is refused, not a crash")
    func negativeLength() async throws {
        try await expectRejected(.incompleteBody, size: 100) { engine, value in
            try await engine.put("k", value, options: WriteOptions(expectedLength: -1))
        }
    }

    @Test("a body that throws midway is incomplete; nothing stored, no spill file left", arguments: sizes)
    func failingBody(size: Int) async throws {
        try await expectRejected(.incompleteBody, size: size) { engine, value in
            let body = ChunkedBody(value, chunkSize: size / 4, failAt: 3)
            try await engine.write(key("k"), body: body, options: WriteOptions())
        }
        // Also for a key that did not exist before.
        try await expectRejected(.incompleteBody, size: size) { engine, value in
            let body = ChunkedBody(value, chunkSize: size / 4, failAt: 3)
            try await engine.write(key("fresh"), body: body, options: WriteOptions())
        }
    }

    @Test("maxBlobSize: announced or streamed, too large is refused", arguments: sizes)
    func tooLarge(size: Int) async throws {
        let limit: (inout EngineConfiguration) -> Void = { $0.maxBlobSize = Int64(size) }
        try await expectRejected(.tooLarge, size: size, limit) { engine, value in
            try await engine.put("k", value + [0])
        }
        try await expectRejected(.tooLarge, size: size, limit) { engine, value in
            try await engine.put("k", value, options: WriteOptions(expectedLength: Int64(size) + 1))
        }
        // Exactly the limit is fine.
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory, limit)) { engine async throws in
                try await engine.put("k", randomBytes(size, seed: 3))
                #expect(try await engine.get("k") == randomBytes(size, seed: 3))
            }
        }
    }

    @Test("a content type over 255 bytes is refused")
    func longContentType() async throws {
        try await expectRejected(.invalidKey, size: 100) { engine, value in
            try await engine.put("k", value, options: WriteOptions(contentType: String(repeating: "a", count: 256)))
        }
    }
}
