import CofferTestKit
import Testing

/// `Expect: 100-continue`: the server sends `100 Continue` only when it wants the body, and answers a request it
/// refuses with the final status before the body, then closes (the client will not send the body).
@Suite(.timeLimit(.minutes(1))) struct ExpectContinueTests {
    static let expect = ("Expect", "100-continue")

    @Test func continueThenCreated() async throws {
        try await withNode(.spilling) { node in
            for (path, body) in [
                ("/store/small", TestData.bytes(500, seed: 1)), ("/store/large", TestData.bytes(300 * 1024, seed: 2)),
            ] {
                let connection = try await node.raw()
                defer { connection.close() }
                try await connection.send(
                    RawRequest.head("PUT", path, [Self.expect, ("Content-Length", "\(body.count)")]))
                let interim = try #require(try await connection.readResponse())
                #expect(interim.status == 100, "\(path)")
                try await connection.send(body)
                let final = try #require(try await connection.readResponse())
                #expect(final.status == 201, "\(path)")
                #expect(final.header("etag") == Digests.etag(body), "\(path)")
                // The connection stays usable.
                try await connection.send(RawRequest.head("GET", path))
                let read = try #require(try await connection.readResponse())
                #expect(read.body == body, "\(path)")
            }
        }
    }

    @Test func continueForChunkedAndForPost() async throws {
        try await withNode { node in
            let connection = try await node.raw()
            defer { connection.close() }
            try await connection.send(
                RawRequest.head("POST", "/store/p", [Self.expect, ("Transfer-Encoding", "chunked")]))
            #expect(try await connection.readResponse()?.status == 100)
            try await connection.send(
                RawRequest.chunk(TestData.text("hello ")) + RawRequest.chunk(TestData.text("world")))
            try await connection.send(RawRequest.lastChunk)
            #expect(try await connection.readResponse()?.status == 201)
            #expect(try await node.request(.GET, "/store/p").text == "hello world")
        }
    }

    @Test func postOnTakenLocationIs409WithoutContinueAndCloses() async throws {
        try await withNode { node in
            let old = TestData.text("already here")
            _ = try await node.request(.PUT, "/store/taken", body: old)
            let connection = try await node.raw()
            defer { connection.close() }
            try await connection.send(
                RawRequest.head("POST", "/store/taken", [Self.expect, ("Content-Length", "1000")]))
            let responses = try await connection.responsesUntilClose()
            #expect(responses.map(\.status) == [409])
            #expect(responses.first?.isJSONError() == true)
            #expect(responses.first?.header("connection")?.lowercased() == "close")
            #expect(try await node.request(.GET, "/store/taken").body == old)
        }
    }

    @Test func failedPreconditionIs412WithoutContinue() async throws {
        try await withNode { node in
            _ = try await node.request(.PUT, "/store/c", body: TestData.text("v1"))
            for (path, condition) in [
                ("/store/c", ("If-None-Match", "*")), ("/store/c", ("If-Match", "\"abc\"")),
                ("/store/absent", ("If-Match", "*")),
            ] {
                let connection = try await node.raw()
                defer { connection.close() }
                try await connection.send(
                    RawRequest.head("PUT", path, [Self.expect, condition, ("Content-Length", "10")]))
                let responses = try await connection.responsesUntilClose()
                #expect(responses.map(\.status) == [412], "\(condition)")
            }
            #expect(try await node.request(.GET, "/store/c").text == "v1")
            #expect(try await node.request(.GET, "/store/absent").status == 404)
        }
    }

    @Test func refusedBeforeRoutingAnswersWithoutContinue() async throws {
        try await withNode(NodeOptions(maxBlobSize: 1000)) { node in
            for (target, length, status) in [
                ("/store/a//b", 10, 400), ("/store/big", 1001, 413), ("/object/x", 10, 405), ("/nowhere", 10, 404),
            ] {
                let method = target == "/object/x" ? "POST" : "PUT"
                let connection = try await node.raw()
                defer { connection.close() }
                try await connection.send(
                    RawRequest.head(method, target, [Self.expect, ("Content-Length", "\(length)")]))
                let responses = try await connection.responsesUntilClose()
                #expect(responses.map(\.status) == [status], "\(target)")
                #expect(responses.first?.isJSONError() == true, "\(target)")
            }
            #expect(node.engine.count == 0)
        }
    }

    @Test func bodySentWithoutWaitingIsAccepted() async throws {
        try await withNode { node in
            let connection = try await node.raw()
            defer { connection.close() }
            let body = TestData.bytes(2000, seed: 5)
            try await connection.send(RawRequest.with("PUT", "/store/eager", [Self.expect], body: body))
            var response = try #require(try await connection.readResponse())
            // A 100 may or may not come first; the final answer must follow.
            if response.status == 100 { response = try #require(try await connection.readResponse()) }
            #expect(response.status == 201)
            try await connection.send(RawRequest.head("GET", "/store/eager"))
            #expect(try await connection.readResponse()?.body == body)
        }
    }
}
