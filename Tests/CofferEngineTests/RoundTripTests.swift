import CofferCore
import NIOCore
import Testing

@testable import CofferEngine

/// Write, then read back byte-exact, across the inline/spill boundary and for streamed multi-MiB bodies.
@Suite("API: round trips")
struct RoundTripTests {
    static let sizes = [0, 1, testInlineThreshold - 1, testInlineThreshold, testInlineThreshold + 1, 65_536, 65_537]

    @Test("write and read back", arguments: sizes)
    func roundTrip(size: Int) async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                let value = randomBytes(size, seed: UInt64(size))
                // Odd chunk sizes, so chunk edges fall everywhere relative to the threshold and spill blocks.
                let body = ChunkedBody(value, chunkSizes: [1, 999, 4096, 7, 65_536])
                let result = try await engine.write(key("blob"), body: body, options: WriteOptions())
                #expect(result.created)
                #expect(result.info.size == Int64(size))
                #expect(result.info.contentType == BlobInfo.defaultContentType)
                #expect(result.info.etag.count == 32)
                #expect(engine.lookup("blob")!.isSpilled == (size > testInlineThreshold))
                #expect(Files.list(directory.blobs).count == (size > testInlineThreshold ? 1 : 0))

                let read = try await engine.read(key("blob"), options: ReadOptions())
                #expect(read.info == result.info)
                #expect(read.decision == .full)
                #expect(try await collect(read.body) == value)
                let head = try await engine.read(key("blob"), options: ReadOptions(includeBody: false))
                #expect(head.info == result.info && head.body == nil && head.decision == .full)

                let again = try await engine.put("blob", value)
                #expect(!again.created)
                #expect(again.info.etag == result.info.etag)
                // The replaced version's spill file is gone.
                #expect(Files.list(directory.blobs).count == (size > testInlineThreshold ? 1 : 0))
            }
        }
    }

    @Test("etags are the MD5 of the bytes; content types are kept")
    func etagAndContentType() async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                let empty = try await engine.put("empty", [])
                #expect(empty.info.etag == "d41d8cd98f00b204e9800998ecf8427e")
                let abc = try await engine.put("abc", Array("abc".utf8), options: WriteOptions(contentType: "text/x"))
                #expect(abc.info.etag == "900150983cd24fb0d6963f7d28e17f72")
                #expect(abc.info.contentType == "text/x")
                let read = try await engine.read(key("abc"), options: ReadOptions(includeBody: false))
                #expect(read.info.contentType == "text/x")
                #expect(read.info.lastModifiedMillis == abc.info.lastModifiedMillis)
                #expect(abc.info.lastModifiedMillis > 1_700_000_000_000)
            }
        }
    }

    @Test("a few MiB streamed from an AsyncThrowingStream")
    func streamedMebibytes() async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                let value = randomBytes(3 * 1024 * 1024 + 12_345, seed: 42)
                let (stream, continuation) = AsyncThrowingStream.makeStream(of: ByteBuffer.self)
                let producer = Task {
                    var offset = 0
                    var step = 1
                    while offset < value.count {
                        let end = min(value.count, offset + 60_000 + step % 9_000)
                        continuation.yield(ByteBuffer(bytes: value[offset..<end]))
                        offset = end
                        step = step &* 31 &+ 17
                    }
                    continuation.finish()
                }
                let options = WriteOptions(expectedLength: Int64(value.count))
                let result = try await engine.write(key("big"), body: stream, options: options)
                await producer.value
                #expect(result.info.size == Int64(value.count))
                #expect(try await engine.get("big") == value)
                // Streamed back in chunks of at most readChunkSize.
                let read = try await engine.read(key("big"), options: ReadOptions())
                guard case .stream(let chunks) = read.body else {
                    Issue.record("a spilled blob should stream")
                    return
                }
                var total = 0
                for try await chunk in chunks {
                    #expect(chunk.readableBytes <= engine.configuration.readChunkSize)
                    total += chunk.readableBytes
                }
                #expect(total == value.count)
            }
        }
    }

    @Test("many keys, delete, and re-create")
    func deleteAndRecreate() async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                for size in [10, 10_000] {
                    let name = "d\(size)"
                    try await engine.put(name, randomBytes(size, seed: 1))
                    let removed = try await engine.remove(name)
                    #expect(removed.size == Int64(size))
                    await #expect(throws: StoreError.notFound) { try await engine.get(name) }
                    await #expect(throws: StoreError.notFound) { try await engine.remove(name) }
                    let again = try await engine.put(name, [1])
                    #expect(again.created)
                    #expect(try await engine.get(name) == [1])
                }
                #expect(Files.list(directory.blobs).isEmpty)
                #expect(engine.count == 2)
            }
        }
    }
}
