import CofferTestKit
import Testing

/// Connection handling: keep-alive, pipelining, malformed requests, early answers with unread bodies, HEAD framing,
/// `Connection: close`, HTTP/1.0 and the idle timeout.
@Suite(.timeLimit(.minutes(1))) struct ConnectionTests {
    @Test func manyRequestsShareOneConnection() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            for i in 0..<25 {
                let body = TestData.bytes(i * 37, seed: UInt64(i))
                let put = try await client.send(.PUT, "/store/ka/\(i)", body: body)
                #expect(put.status == 201)
                #expect(put.header("connection") == nil)
                let get = try await client.send(.GET, "/store/ka/\(i)")
                #expect(get.body == body)
            }
            // Errors that need no body draining keep the connection too.
            #expect(try await client.send(.GET, "/store/ka/missing").status == 404)
            #expect(try await client.send(.GET, "/store/a//b").status == 400)
            #expect(try await client.send(.PATCH, "/store/ka/1").status == 405)
            #expect(try await client.send(.GET, "/store/ka/3").body == TestData.bytes(3 * 37, seed: 3))
            #expect(client.isActive)
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await withNode(.spilling) { node in
            let a = TestData.bytes(100, seed: 1)
            let b = TestData.bytes(200 * 1024, seed: 2)  // spilled: streamed while the next request waits
            _ = try await node.request(.PUT, "/store/a", body: a)
            _ = try await node.request(.PUT, "/store/b", body: b)

            let connection = try await node.raw()
            defer { connection.close() }
            try await connection.send(RawRequest.head("GET", "/store/b") + RawRequest.head("GET", "/store/a"))
            let first = try #require(try await connection.readResponse())
            let second = try #require(try await connection.readResponse())
            #expect(first.status == 200)
            #expect(first.body == b)
            #expect(second.status == 200)
            #expect(second.body == a)

            // Writes, reads and deletes pipelined in one packet.
            let c = TestData.text("pipelined")
            try await connection.send(
                RawRequest.with("PUT", "/store/c", body: c) + RawRequest.head("GET", "/store/c")
                    + RawRequest.head("HEAD", "/store/c") + RawRequest.head("DELETE", "/store/c")
                    + RawRequest.head("GET", "/store/c") + RawRequest.head("GET", "/health"))
            var statuses: [Int] = []
            var bodies: [[UInt8]] = []
            for headOnly in [false, false, true, false, false, false] {
                let response = try #require(try await connection.readResponse(headOnly: headOnly))
                statuses.append(response.status)
                bodies.append(response.body)
            }
            #expect(statuses == [201, 200, 200, 204, 404, 200])
            #expect(bodies[1] == c)
            #expect(bodies[2].isEmpty)
            #expect(FlatJSON.parse(String(decoding: bodies[5], as: UTF8.self)) == ["status": "ok"])
        }
    }

    @Test(arguments: [
        "GARBAGE\r\n\r\n", "GET\r\n\r\n", "GET /store/a HTTP/1.1\r\nBad Header Line\r\n\r\n",
        "GET /store/a HTTP/1.1\r\nContent-Length: abc\r\n\r\n", "\u{1}\u{2}\u{3}\r\n\r\n",
        "PUT /store/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
        "GET /store/caf\u{e9} HTTP/1.1\r\nHost: x\r\n\r\n",  // raw non-ASCII bytes in the target
        "PUT /store/a HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "PUT /store/a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef",
        "PUT /store/a HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        "PUT /store/a HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    ])
    func malformedRequestsAre400JSONAndClose(request: String) async throws {
        try await withNode { node in
            let connection = try await node.raw()
            defer { connection.close() }
            try await connection.send(request)
            let responses = try await connection.responsesUntilClose()
            #expect(responses.count == 1)
            let response = try #require(responses.first)
            #expect(response.status == 400)
            #expect(response.isJSONError("bad_request"))
            #expect(response.header("connection")?.lowercased() == "close")
            #expect(node.engine.count == 0)
        }
    }

    @Test func malformedRequestAfterAGoodOneStillGetsBothAnswers() async throws {
        try await withNode { node in
            let connection = try await node.raw()
            defer { connection.close() }
            try await connection.send(RawRequest.head("GET", "/health") + Array("NONSENSE\r\n\r\n".utf8))
            let responses = try await connection.responsesUntilClose()
            #expect(responses.map(\.status) == [200, 400])
        }
    }

    @Test func earlyAnswerDrainsASmallBodyAndKeepsTheConnection() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let refused = try await client.send(.PUT, "/store/a//b", body: TestData.bytes(10 * 1024))
            #expect(refused.status == 400)
            #expect(refused.header("connection") == nil)
            _ = try await client.send(.PUT, "/store/taken", body: [1])
            let conflict = try await client.send(.POST, "/store/taken", body: TestData.bytes(20 * 1024))
            #expect(conflict.status == 409)
            // The unread bodies were drained: the next request on the connection is framed correctly.
            #expect(try await client.send(.GET, "/store/taken").body == [1])
        }
    }

    @Test func earlyAnswerToALargeBodyClosesTheConnection() async throws {
        try await withNode { node in
            for (method, target) in [("PUT", "/store/a//b"), ("POST", "/object/x")] {
                let connection = try await node.raw()
                defer { connection.close() }
                try await connection.send(RawRequest.head(method, target, [("Content-Length", "\(1024 * 1024)")]))
                let responses = try await connection.responsesUntilClose()
                #expect(responses.count == 1, "\(target)")
                #expect(responses.first?.status == (method == "PUT" ? 400 : 405), "\(target)")
                #expect(responses.first?.header("connection")?.lowercased() == "close", "\(target)")
            }
        }
    }

    @Test func headResponsesCarryNoBodyOnTheWire() async throws {
        try await withNode { node in
            _ = try await node.request(.PUT, "/store/h", body: TestData.bytes(5000))
            let connection = try await node.raw()
            defer { connection.close() }
            // Each HEAD, found or not, is followed by a GET whose response must start right after the HEAD's head.
            for target in ["/store/h", "/store/missing", "/store/a//b", "/object/bad-id", "/nowhere", "/health"] {
                try await connection.send(RawRequest.head("HEAD", target) + RawRequest.head("GET", "/health"))
                let head = try #require(try await connection.readResponse(headOnly: true), "\(target)")
                #expect(head.body.isEmpty, "\(target)")
                let next = try #require(try await connection.readResponse(), "\(target)")
                #expect(next.status == 200, "HEAD \(target) left bytes on the wire")
                #expect(FlatJSON.parse(next.text) == ["status": "ok"], "HEAD \(target) left bytes on the wire")
            }
        }
    }

    @Test func connectionCloseIsHonoured() async throws {
        try await withNode { node in
            let connection = try await node.raw()
            defer { connection.close() }
            try await connection.send(RawRequest.head("GET", "/health", [("Connection", "close")]))
            let responses = try await connection.responsesUntilClose()
            #expect(responses.map(\.status) == [200])
            #expect(responses.first?.header("connection")?.lowercased() == "close")
        }
    }

    @Test func connectionCloseAfterAStreamedResponse() async throws {
        try await withNode(.spilling) { node in
            let body = TestData.bytes(300 * 1024, seed: 5)
            _ = try await node.request(.PUT, "/store/s", body: body)
            let connection = try await node.raw()
            defer { connection.close() }
            try await connection.send(RawRequest.head("GET", "/store/s", [("Connection", "close")]))
            let responses = try await connection.responsesUntilClose()
            #expect(responses.count == 1)
            #expect(responses.first?.body == body)
        }
    }

    @Test func http10ClosesUnlessKeepAliveIsAsked() async throws {
        try await withNode { node in
            _ = try await node.request(.PUT, "/store/old", body: TestData.text("ten"))
            let plain = try await node.raw()
            defer { plain.close() }
            try await plain.send("GET /store/old HTTP/1.0\r\n\r\n")
            let responses = try await plain.responsesUntilClose()
            #expect(responses.map(\.text) == ["ten"])

            let keepAlive = try await node.raw()
            defer { keepAlive.close() }
            try await keepAlive.send("GET /store/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            let first = try #require(try await keepAlive.readResponse())
            #expect(first.text == "ten")
            #expect(first.header("connection")?.lowercased() == "keep-alive")
            try await keepAlive.send("GET /health HTTP/1.0\r\n\r\n")
            #expect(try await keepAlive.readResponse()?.status == 200)
        }
    }

    @Test func idleConnectionsAreClosed() async throws {
        var options = NodeOptions()
        options.idleTimeout = .seconds(4)  // long enough for the first request on a loaded machine (1.5 s was not)
        try await withNode(options) { node in
            let connection = try await node.raw()
            defer { connection.close() }
            try await connection.send(RawRequest.head("GET", "/health"))
            #expect(try await connection.readResponse()?.status == 200)
            // Nothing more is sent: the server closes on its own.
            _ = try await connection.readUntilClose()
            #expect(await connection.isClosedByPeer)
        }
    }
}
