import AsyncHTTPClient
import CofferCore
import Crypto
import Foundation
import NIOCore
import Testing

@testable import CofferGateway

/// ``S3Backend`` against real S3 servers: moto's standalone server, one per test, on loopback.
@Suite("S3Backend")
struct S3BackendTests {
    @Test("round trips of 0 B, 1 B and 1 MiB: bytes, size, MD5 ETag, content type, last-modified")
    func roundTrips() async throws {
        try await MotoServer.withServer { moto in
            try await withBackend(moto) { backend in
                for (index, size) in [0, 1, 1 << 20].enumerated() {
                    let key = "object/size\(index)"
                    let bytes = S3TestData.bytes(size, seed: UInt64(size))
                    let put = try await backend.put(key, body: .buffer(ByteBuffer(bytes: bytes)), contentType: "a/b")
                    #expect(put.size == Int64(size))
                    #expect(put.etag == S3TestData.md5Hex(bytes), "ETag is the MD5 hex without quotes")

                    let head = try await backend.head(key)
                    #expect(head.size == Int64(size))
                    #expect(head.etag == S3TestData.md5Hex(bytes))
                    #expect(head.contentType == "a/b")
                    let now = Int64(Date().timeIntervalSince1970 * 1000)
                    #expect(abs((head.lastModifiedMillis ?? 0) - now) < 3_600_000)

                    let get = try await backend.get(key, range: nil)
                    #expect(get.range == 0..<Int64(size))
                    #expect(get.object.size == Int64(size))
                    #expect(get.object.etag == head.etag)
                    let read = try await S3TestData.collect(get.body)
                    #expect(read.count == size)
                    #expect(S3TestData.sha256Hex(read) == S3TestData.sha256Hex(bytes))
                }
            }
        }
    }

    @Test("range GETs: inside, clamped at the end, empty, and past the end")
    func ranges() async throws {
        try await MotoServer.withServer { moto in
            try await withBackend(moto) { backend in
                let bytes = S3TestData.bytes(100_000, seed: 3)
                _ = try await backend.put("object/r", body: .buffer(ByteBuffer(bytes: bytes)), contentType: nil)
                for range: Range<Int64> in [0..<10, 1000..<2000, 99_999..<100_000, 0..<100_000] {
                    let get = try await backend.get("object/r", range: range)
                    #expect(get.range == range)
                    #expect(get.object.size == 100_000)
                    #expect(
                        try await S3TestData.collect(get.body)
                            == Array(bytes[Int(range.lowerBound)..<Int(range.upperBound)]))
                }
                let clamped = try await backend.get("object/r", range: 99_990..<200_000)
                #expect(clamped.range == 99_990..<100_000)
                #expect(try await S3TestData.collect(clamped.body) == Array(bytes[99_990...]))

                let empty = try await backend.get("object/r", range: 500..<500)
                #expect(empty.range == 500..<500)
                #expect(try await S3TestData.collect(empty.body).isEmpty)

                await expectBackendError(.rangeNotSatisfiable) {
                    _ = try await backend.get("object/r", range: 100_000..<100_010)
                }
                await expectBackendError(.notFound) { _ = try await backend.get("object/absent", range: 0..<10) }
            }
        }
    }

    @Test("HEAD, DELETE, then 404 for HEAD and GET; deleting again succeeds")
    func headDeleteNotFound() async throws {
        try await MotoServer.withServer { moto in
            try await withBackend(moto) { backend in
                _ = try await backend.put("object/d", body: .buffer(ByteBuffer(string: "hello")), contentType: nil)
                #expect(try await backend.head("object/d").size == 5)
                try await backend.delete("object/d")
                let head = await expectBackendError(.notFound) { _ = try await backend.head("object/d") }
                #expect(head?.status == 404)
                let get = await expectBackendError(.notFound) { _ = try await backend.get("object/d", range: nil) }
                #expect(get?.code == "NoSuchKey")
                try await backend.delete("object/d")
                try await backend.delete("object/never-existed")
            }
        }
    }

    @Test("the bucket is created on first write, and again after the server lost it")
    func bucketAutoCreated() async throws {
        try await MotoServer.withServer { moto in
            try await withBackend(moto, bucket: "fresh-bucket") { backend in
                try await backend.probe()  // 404 on the bucket still proves the server answers
                let missing = await expectBackendError(.notFound) { _ = try await backend.get("object/x", range: nil) }
                #expect(missing?.code == "NoSuchBucket")
                #expect(!(try await moto.listBuckets()).contains("fresh-bucket"))

                _ = try await backend.put("object/x", body: .buffer(ByteBuffer(string: "x")), contentType: nil)
                #expect(try await moto.listBuckets().contains("fresh-bucket"))
                #expect(try await S3TestData.collect(backend.get("object/x", range: nil).body) == Array("x".utf8))

                // A restarted moto is empty: a buffered write re-creates the bucket and succeeds at once.
                try await moto.restart()
                _ = try await backend.put("object/y", body: .buffer(ByteBuffer(string: "y")), contentType: nil)
                #expect(try await S3TestData.collect(backend.get("object/y", range: nil).body) == Array("y".utf8))

                // A streamed write cannot be resent: it fails as unavailable (NoSuchBucket), the bucket is created
                // again on the way, and the next streamed write succeeds.
                try await moto.restart()
                let bytes = S3TestData.bytes(300_000, seed: 5)
                func streamed() -> BackendBody {
                    .stream(length: Int64(bytes.count), S3TestData.stream(bytes, chunkSize: 65_536))
                }
                let lost = await expectBackendError(.unavailable) {
                    _ = try await backend.put("object/z", body: streamed(), contentType: nil)
                }
                #expect(lost?.code == "NoSuchBucket")
                _ = try await backend.put("object/z", body: streamed(), contentType: nil)
                #expect(try await S3TestData.collect(backend.get("object/z", range: nil).body) == bytes)
            }
        }
    }
}
