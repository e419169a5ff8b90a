import CofferTestKit
import Testing

/// Upload framing and verification: Content-Length and chunked bodies, empty bodies, Content-MD5 and
/// x-content-sha256, and the maximum blob size.
@Suite(.timeLimit(.minutes(1))) struct UploadTests {
    @Test func chunkedUploads() async throws {
        try await withNode(.spilling) { node in
            let client = try await node.client()
            defer { client.close() }
            let small = TestData.bytes(1000, seed: 41)
            let created = try await client.send(.PUT, "/store/chunked", chunks: TestData.split(small, every: 97))
            #expect(created.status == 201)
            #expect(created.header("etag") == Digests.etag(small))
            #expect(try await client.send(.GET, "/store/chunked").body == small)

            // Large enough to spill, in uneven chunks.
            let large = TestData.bytes(700 * 1024 + 3, seed: 42)
            let replaced = try await client.send(.PUT, "/store/chunked", chunks: TestData.split(large, every: 50_001))
            #expect(replaced.status == 204)
            #expect(replaced.header("etag") == Digests.etag(large))
            #expect(try await client.send(.GET, "/store/chunked").body == large)

            let posted = try await client.send(
                .POST, "/store/chunked-post", chunks: [TestData.text("a"), TestData.text("b")])
            #expect(posted.status == 201)
            #expect(try await client.send(.GET, "/store/chunked-post").text == "ab")
        }
    }

    @Test func emptyChunkedBodyIsAnEmptyBlob() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let created = try await client.send(.PUT, "/store/e", chunks: [])
            #expect(created.status == 201)
            #expect(created.header("etag") == Digests.etag([]))
            let read = try await client.send(.GET, "/store/e")
            #expect(read.status == 200)
            #expect(read.body.isEmpty)
        }
    }

    @Test func correctDigestsAreAccepted() async throws {
        try await withNode(.spilling) { node in
            let client = try await node.client()
            defer { client.close() }
            for (index, size) in [0, 100, 200 * 1024].enumerated() {
                let body = TestData.bytes(size, seed: UInt64(50 + index))
                let md5 = try await client.send(
                    .PUT, "/store/md5-\(size)", headers: [("Content-MD5", Digests.base64(Digests.md5(body)))],
                    body: body)
                #expect(md5.status == 201, "size \(size)")
                let sha = try await client.send(
                    .PUT, "/store/sha-\(size)", headers: [("x-content-sha256", Digests.hex(Digests.sha256(body)))],
                    body: body)
                #expect(sha.status == 201, "size \(size)")
                let both = try await client.send(
                    .PUT, "/store/both-\(size)",
                    headers: [
                        ("Content-MD5", Digests.base64(Digests.md5(body))),
                        ("x-content-sha256", Digests.hex(Digests.sha256(body)).uppercased()),
                    ],
                    chunks: TestData.split(body, every: 30_000))
                #expect(both.status == 201, "size \(size)")
                #expect(try await client.send(.GET, "/store/both-\(size)").body == body)
            }
        }
    }

    @Test func digestMismatchIs400AndStoresNothing() async throws {
        try await withNode(.spilling) { node in
            let client = try await node.client()
            defer { client.close() }
            let old = TestData.text("the old version")
            _ = try await client.send(.PUT, "/store/kept", body: old)
            let filesBefore = node.directory.blobFiles()
            for size in [10, 300 * 1024] {
                let body = TestData.bytes(size, seed: 60)
                let wrongMD5 = Digests.base64(Digests.md5(body + [0]))
                let wrongSHA = Digests.hex(Digests.sha256(body + [0]))
                for headers in [[("Content-MD5", wrongMD5)], [("x-content-sha256", wrongSHA)]] {
                    for path in ["/store/kept", "/store/new-\(size)"] {
                        let client = try await node.client()
                        defer { client.close() }
                        let response = try await client.send(.PUT, path, headers: headers, body: body)
                        #expect(response.status == 400, "\(headers[0].0) \(path)")
                        #expect(response.isJSONError("digest_mismatch"), "\(headers[0].0) \(path)")
                    }
                }
                #expect(try await client.send(.GET, "/store/new-\(size)").status == 404)
            }
            #expect(try await client.send(.GET, "/store/kept").body == old)
            #expect(node.engine.count == 1)
            #expect(await node.eventually { node.directory.blobFiles() == filesBefore })
        }
    }

    @Test(arguments: [
        ("Content-MD5", "not base64!"), ("Content-MD5", "aGVsbG8="), ("x-content-sha256", "abc"),
        ("x-content-sha256", String(repeating: "g", count: 64)),
    ])
    func malformedDigestHeadersAre400(name: String, value: String) async throws {
        try await withNode { node in
            let response = try await node.request(.PUT, "/store/d", headers: [(name, value)], body: TestData.text("x"))
            #expect(response.status == 400)
            #expect(response.isJSONError())
            #expect(try await node.request(.GET, "/store/d").status == 404)
        }
    }

    @Test func contentTypeIsKeptAndValidated() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            _ = try await client.send(.PUT, "/store/t", headers: [("Content-Type", "application/x-custom")], body: [1])
            #expect(try await client.send(.GET, "/store/t").header("content-type") == "application/x-custom")
            let long = try await client.send(
                .PUT, "/store/t", headers: [("Content-Type", String(repeating: "a", count: 256))], body: [2])
            #expect(long.status == 400)
            #expect(long.isJSONError())
            #expect(try await client.send(.GET, "/store/t").body == [1])
        }
    }

    static let limit = NodeOptions(inlineThreshold: 64 * 1024, maxBlobSize: 1024 * 1024)

    @Test func bodyOfExactlyTheMaximumSizeIsAccepted() async throws {
        try await withNode(Self.limit) { node in
            let body = TestData.bytes(1024 * 1024, seed: 70)
            let whole = try await node.request(.PUT, "/store/max", body: body)
            #expect(whole.status == 201)
            #expect(
                try await node.request(.PUT, "/store/max-chunked", chunks: TestData.split(body, every: 100_000)).status
                    == 201)
            #expect(try await node.request(.GET, "/store/max-chunked").body == body)
        }
    }

    @Test func announcedOversizedBodyIs413BeforeItIsSent() async throws {
        try await withNode(Self.limit) { node in
            let old = TestData.text("old")
            _ = try await node.request(.PUT, "/store/big", body: old)
            for method in ["PUT", "POST"] {
                let connection = try await node.raw()
                defer { connection.close() }
                // Only the head: the server must answer without waiting for the body.
                let target = method == "PUT" ? "/store/big" : "/store/big-post"
                try await connection.send(RawRequest.head(method, target, [("Content-Length", "\(1024 * 1024 + 1)")]))
                let response = try #require(try await connection.readResponse())
                #expect(response.status == 413)
                #expect(response.isJSONError("too_large"))
                #expect(response.header("connection")?.lowercased() == "close")
                _ = try await connection.readUntilClose()
                #expect(await connection.isClosedByPeer)
            }
            #expect(try await node.request(.GET, "/store/big").body == old)
            #expect(try await node.request(.GET, "/store/big-post").status == 404)
        }
    }

    @Test func chunkedBodyOverTheMaximumIs413AndCloses() async throws {
        try await withNode(Self.limit) { node in
            let old = TestData.text("old")
            _ = try await node.request(.PUT, "/store/big", body: old)
            let connection = try await node.raw()
            defer { connection.close() }
            try await connection.send(RawRequest.head("PUT", "/store/big", [("Transfer-Encoding", "chunked")]))
            // Exactly one byte too many, and no last chunk: the server must stop at the limit on its own.
            for part in TestData.split(TestData.bytes(1024 * 1024, seed: 71), every: 128 * 1024) {
                try await connection.send(RawRequest.chunk(part))
            }
            try await connection.send(RawRequest.chunk([1]))
            let response = try #require(try await connection.readResponse())
            #expect(response.status == 413)
            #expect(response.isJSONError("too_large"))
            _ = try await connection.readUntilClose()
            #expect(await connection.isClosedByPeer)
            #expect(try await node.request(.GET, "/store/big").body == old)
            #expect(await node.eventually { node.directory.blobFiles().isEmpty })
        }
    }
}
