import CofferTestKit
import Testing

/// Blobs of several MiB: uploaded with Content-Length or chunked, streamed back byte-exact, through both the spilled
/// path (small inline threshold) and the engine's default threshold.
@Suite(.timeLimit(.minutes(1))) struct LargeBlobTests {
    @Test func severalMiBRoundTripThroughSpillFiles() async throws {
        try await withNode(.spilling) { node in
            let client = try await node.client()
            defer { client.close() }
            let body = TestData.bytes(6 * TestData.mib + 12_345, seed: 91)
            let created = try await client.send(.PUT, "/store/large/one", body: body)
            #expect(created.status == 201)
            #expect(created.header("etag") == Digests.etag(body))
            #expect(node.directory.blobFiles().count == 1)

            let read = try await client.send(.GET, "/store/large/one")
            #expect(read.status == 200)
            #expect(read.header("content-length") == "\(body.count)")
            #expect(read.header("etag") == Digests.etag(body))
            #expect(read.body.count == body.count)
            #expect(read.body == body)
            let head = try await client.send(.HEAD, "/store/large/one")
            #expect(head.header("content-length") == "\(body.count)")

            // Replaced by a chunked upload of a different size; the old spill file goes once replaced.
            let second = TestData.bytes(3 * TestData.mib + 1, seed: 92)
            let replaced = try await client.send(
                .PUT, "/store/large/one", chunks: TestData.split(second, every: 256 * 1024 + 3))
            #expect(replaced.status == 204)
            #expect(try await client.send(.GET, "/store/large/one").body == second)
            #expect(await node.eventually { node.directory.blobFiles().count == 1 })

            // Deleting removes the file.
            #expect(try await client.send(.DELETE, "/store/large/one").status == 204)
            #expect(await node.eventually { node.directory.blobFiles().isEmpty })
        }
    }

    @Test func largeBlobsWithTheDefaultThreshold() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            // Just under, at and over the default 1 MiB inline threshold.
            for (index, size) in [TestData.mib - 1, TestData.mib, TestData.mib + 1, 4 * TestData.mib].enumerated() {
                let body = TestData.bytes(size, seed: UInt64(100 + index))
                #expect(try await client.send(.PUT, "/object/big\(index)", body: body).status == 201)
                let read = try await client.send(.GET, "/object/big\(index)")
                #expect(read.body == body, "size \(size)")
                #expect(read.header("etag") == Digests.etag(body), "size \(size)")
            }
        }
    }

    @Test func concurrentDownloadsOfOneLargeBlob() async throws {
        try await withNode(.spilling) { node in
            let body = TestData.bytes(3 * TestData.mib, seed: 93)
            #expect(try await node.request(.PUT, "/store/shared", body: body).status == 201)
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for _ in 0..<4 {
                    group.addTask { try await node.request(.GET, "/store/shared").body == body }
                }
                for try await same in group { #expect(same) }
            }
        }
    }

    @Test func clientLeavingMidDownloadDoesNotDisturbTheServer() async throws {
        try await withNode(.spilling) { node in
            let body = TestData.bytes(8 * TestData.mib, seed: 94)
            #expect(try await node.request(.PUT, "/store/left", body: body).status == 201)
            for _ in 0..<3 {
                let connection = try await node.raw()
                try await connection.send(RawRequest.head("GET", "/store/left"))
                // Wait for the first bytes of the streamed response, then walk away.
                let started = try await connection.readSome()
                #expect(!started.isEmpty)
                connection.close()
            }
            // The node still serves the whole blob, and can replace and delete it.
            #expect(try await node.request(.GET, "/store/left").body == body)
            #expect(try await node.request(.PUT, "/store/left", body: [1]).status == 204)
            #expect(try await node.request(.DELETE, "/store/left").status == 204)
            #expect(await node.eventually { node.directory.blobFiles().isEmpty })
        }
    }
}
