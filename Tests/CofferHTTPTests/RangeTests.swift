import CofferTestKit
import Testing

/// `Range: bytes=a-b | a- | -n` on inline and spilled blobs: 206 with the exact slice and `Content-Range`, 416 with
/// `Content-Range: bytes */size` when unsatisfiable, and the full body when the header is invalid.
@Suite(.timeLimit(.minutes(1))) struct RangeTests {
    /// Sends `range` and checks a 206 carrying `expected` (a half-open slice of `body`).
    private func expectPartial(
        _ client: HTTPTestClient, _ path: String, _ range: String, _ body: [UInt8], _ expected: Range<Int>,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let response = try await client.send(.GET, path, headers: [("Range", range)])
        #expect(response.status == 206, "\(range)", sourceLocation: sourceLocation)
        #expect(
            response.header("content-range") == "bytes \(expected.lowerBound)-\(expected.upperBound - 1)/\(body.count)",
            "\(range)", sourceLocation: sourceLocation)
        #expect(response.header("content-length") == "\(expected.count)", "\(range)", sourceLocation: sourceLocation)
        #expect(response.header("etag") == Digests.etag(body), "\(range)", sourceLocation: sourceLocation)
        #expect(response.body == Array(body[expected]), "\(range)", sourceLocation: sourceLocation)
    }

    @Test func rangesOfAnInlineBlob() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let body = TestData.bytes(1000, seed: 11)
            _ = try await client.send(.PUT, "/store/r", body: body)
            try await expectPartial(client, "/store/r", "bytes=0-0", body, 0..<1)
            try await expectPartial(client, "/store/r", "bytes=10-19", body, 10..<20)
            try await expectPartial(client, "/store/r", "bytes=500-", body, 500..<1000)
            try await expectPartial(client, "/store/r", "bytes=-100", body, 900..<1000)
            try await expectPartial(client, "/store/r", "bytes=-5000", body, 0..<1000)
            try await expectPartial(client, "/store/r", "bytes=990-5000", body, 990..<1000)
            try await expectPartial(client, "/store/r", "bytes=999-999", body, 999..<1000)
        }
    }

    @Test func unsatisfiableRangesAre416() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            _ = try await client.send(.PUT, "/store/r", body: TestData.bytes(1000))
            _ = try await client.send(.PUT, "/store/empty", body: [])
            for (path, range, size) in [
                ("/store/r", "bytes=1000-", 1000), ("/store/r", "bytes=5000-6000", 1000),
                ("/store/r", "bytes=-0", 1000),
                ("/store/empty", "bytes=0-", 0), ("/store/empty", "bytes=-10", 0),
            ] {
                let response = try await client.send(.GET, path, headers: [("Range", range)])
                #expect(response.status == 416, "\(path) \(range)")
                #expect(response.header("content-range") == "bytes */\(size)", "\(path) \(range)")
                #expect(response.isJSONError("range_not_satisfiable"), "\(path) \(range)")
            }
            #expect(try await client.send(.GET, "/store/r").status == 200)
        }
    }

    @Test func invalidOrMultipleRangesServeTheWholeBlob() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let body = TestData.bytes(100)
            _ = try await client.send(.PUT, "/store/r", body: body)
            for range in ["bytes=5-1", "bytes=a-b", "items=0-1", "bytes=0-1,5-6", "bytes=--1"] {
                let response = try await client.send(.GET, "/store/r", headers: [("Range", range)])
                #expect(response.status == 200, "\(range)")
                #expect(response.body == body, "\(range)")
                #expect(response.header("content-range") == nil, "\(range)")
            }
        }
    }

    @Test func headWithRangeHasThePartialHeaders() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            _ = try await client.send(.PUT, "/store/r", body: TestData.bytes(1000))
            let head = try await client.send(.HEAD, "/store/r", headers: [("Range", "bytes=100-199")])
            #expect(head.status == 206)
            #expect(head.header("content-range") == "bytes 100-199/1000")
            #expect(head.header("content-length") == "100")
            #expect(head.body.isEmpty)
            let unsatisfiable = try await client.send(.HEAD, "/store/r", headers: [("Range", "bytes=2000-")])
            #expect(unsatisfiable.status == 416)
            #expect(unsatisfiable.body.isEmpty)
            #expect(try await client.send(.GET, "/store/r").body.count == 1000)
        }
    }

    @Test func rangesInsideASpilledBlobCrossBlockBoundaries() async throws {
        try await withNode(.spilling) { node in
            let client = try await node.client()
            defer { client.close() }
            let block = 64 * 1024
            let body = TestData.bytes(10 * block + 1234, seed: 12)
            #expect(try await client.send(.PUT, "/store/big", body: body).status == 201)
            let ranges: [(String, Range<Int>)] = [
                ("bytes=0-9", 0..<10),
                ("bytes=\(block - 10)-\(block + 9)", (block - 10)..<(block + 10)),
                ("bytes=\(block)-\(block)", block..<(block + 1)),
                ("bytes=\(block - 1)-\(block)", (block - 1)..<(block + 1)),
                ("bytes=\(block / 2)-\(3 * block + 17)", (block / 2)..<(3 * block + 18)),
                ("bytes=\(4 * block - 3)-\(4 * block + 2)", (4 * block - 3)..<(4 * block + 3)),
                ("bytes=\(5 * block)-", (5 * block)..<body.count),
                ("bytes=-\(block + 7)", (body.count - block - 7)..<body.count),
                ("bytes=1-\(body.count - 2)", 1..<(body.count - 1)),
                ("bytes=\(body.count - 1)-", (body.count - 1)..<body.count),
            ]
            for (range, expected) in ranges {
                try await expectPartial(client, "/store/big", range, body, expected)
            }
            let full = try await client.send(.GET, "/store/big")
            #expect(full.body == body)
        }
    }
}
