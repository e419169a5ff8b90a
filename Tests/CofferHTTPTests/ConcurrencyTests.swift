import CofferTestKit
import Testing

/// Concurrent requests through HTTP, each client on its own connection: create-only races have one winner, and
/// readers racing writers see whole versions, never a mix.
@Suite(.timeLimit(.minutes(1))) struct ConcurrencyTests {
    @Test func concurrentPostsToOneLocationHaveExactlyOneWinner() async throws {
        try await withNode(.spilling) { node in
            // Some bodies are spilled, so the racers are slow and really overlap.
            let bodies = (0..<20).map { TestData.bytes($0 % 2 == 0 ? 100 + $0 : 100 * 1024 + $0, seed: UInt64($0)) }
            // Connect everyone first so the requests start together.
            var clients: [HTTPTestClient] = []
            for _ in bodies { clients.append(try await node.client()) }
            defer { for client in clients { client.close() } }
            let results = try await withThrowingTaskGroup(of: (Int, TestResponse).self) { group in
                for (index, (client, body)) in zip(clients, bodies).enumerated() {
                    group.addTask { (index, try await client.send(.POST, "/store/race", body: body)) }
                }
                var results: [(Int, TestResponse)] = []
                for try await result in group { results.append(result) }
                return results
            }
            let winners = results.filter { $0.1.status == 201 }
            let losers = results.filter { $0.1.status == 409 }
            #expect(winners.count == 1)
            #expect(losers.count == 19)
            #expect(losers.allSatisfy { $0.1.isJSONError() })
            let winner = try #require(winners.first)
            let read = try await node.request(.GET, "/store/race")
            #expect(read.body == bodies[winner.0])
            #expect(read.header("etag") == winner.1.header("etag"))
            #expect(node.engine.count == 1)
        }
    }

    @Test func readersRacingWritersSeeWholeVersions() async throws {
        try await withNode(.spilling) { node in
            // Inline and spilled versions of different sizes; every one is a valid answer, a mix of two is not.
            let versions = (0..<6).map {
                TestData.bytes([10, 1000, 70 * 1024, 200 * 1024, 5, 130 * 1024][$0], seed: UInt64(200 + $0))
            }
            let etags = Set(versions.map(Digests.etag))
            _ = try await node.request(.PUT, "/store/hot", body: versions[0])
            try await withThrowingTaskGroup(of: Void.self) { group in
                for writer in 0..<3 {
                    group.addTask {
                        let client = try await node.client()
                        defer { client.close() }
                        for round in 0..<8 {
                            let body = versions[(writer + round) % versions.count]
                            let response = try await client.send(.PUT, "/store/hot", body: body)
                            #expect(response.status == 204)
                        }
                    }
                }
                for _ in 0..<3 {
                    group.addTask {
                        let client = try await node.client()
                        defer { client.close() }
                        for _ in 0..<12 {
                            let response = try await client.send(.GET, "/store/hot")
                            #expect(response.status == 200)
                            #expect(
                                versions.contains(response.body),
                                "a read returned \(response.body.count) bytes of no version")
                            #expect(response.header("etag") == Digests.etag(response.body))
                            #expect(etags.contains(response.header("etag") ?? ""))
                            let ranged = try await client.send(.GET, "/store/hot", headers: [("Range", "bytes=3-")])
                            let version = versions.first { Digests.etag($0) == ranged.header("etag") }
                            #expect(version.map { Array($0.dropFirst(3)) } == ranged.body)
                        }
                    }
                }
                try await group.waitForAll()
            }
            // Only the final version's spill file (if it is spilled) remains.
            let final = try await node.request(.GET, "/store/hot")
            #expect(versions.contains(final.body))
            let expectedFiles = final.body.count > 64 * 1024 ? 1 : 0
            #expect(await node.eventually { node.directory.blobFiles().count == expectedFiles })
        }
    }

    @Test func manyClientsOnManyKeys() async throws {
        try await withNode { node in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<16 {
                    group.addTask {
                        let client = try await node.client()
                        defer { client.close() }
                        for i in 0..<10 {
                            let body = TestData.bytes(i * 100, seed: UInt64(worker * 100 + i))
                            #expect(try await client.send(.POST, "/store/w\(worker)/\(i)", body: body).status == 201)
                        }
                        for i in 0..<10 {
                            let expected = TestData.bytes(i * 100, seed: UInt64(worker * 100 + i))
                            #expect(try await client.send(.GET, "/store/w\(worker)/\(i)").body == expected)
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(node.engine.count == 160)
        }
    }
}
