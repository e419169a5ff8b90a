import CofferTestKit
import NIOCore
import Testing

/// The test support itself: the digests and the raw response parser must be right for the other tests to mean
/// anything.
@Suite struct SupportSelfTests {
    @Test func digestsMatchKnownVectors() {
        #expect(Digests.hex(Digests.md5([])) == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(
            Digests.hex(Digests.md5(TestData.text("The quick brown fox jumps over the lazy dog")))
                == "9e107d9d372bb6826bd81d3542a419d6")
        #expect(
            Digests.hex(Digests.sha256([]))
                == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(
            Digests.hex(Digests.sha256(TestData.text("abc")))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let long = TestData.text(String(repeating: "a", count: 1000))
        #expect(Digests.hex(Digests.md5(long)) == "cabe45dcc9ae5b66ba86600cca6b8ba8")
        #expect(Digests.base64(TestData.text("hello")) == "aGVsbG8=")
        #expect(Digests.base64(TestData.text("hi")) == "aGk=")
    }

    @Test func rawParserHandlesFramings() throws {
        let text =
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
            + "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"
        var bytes = Array(text.utf8)[...]
        var statuses: [Int] = []
        var bodies: [String] = []
        while let (response, consumed) = RawResponseParser.parse(bytes, headOnly: false, atEOF: false) {
            statuses.append(response.status)
            bodies.append(response.text)
            bytes = bytes.dropFirst(consumed)
        }
        #expect(statuses == [100, 200, 200])
        #expect(bodies == ["", "abc", "hello"])
        #expect(bytes.isEmpty)
        #expect(FlatJSON.parse(#"{"error":"a\"b","message":"x\u0001"}"#) == ["error": "a\"b", "message": "x\u{01}"])
    }

    @Test func aHungRequestTimesOutInsteadOfHanging() async throws {
        try await withNode { node in
            // An unfinished head: the server waits for the rest, so no response comes.
            let raw = try await RawConnection.connect(port: node.port, timeout: .milliseconds(200))
            defer { raw.close() }
            try await raw.send("GET /health HTTP/1.1\r\nHost: x\r\n")
            await #expect(throws: TestClientError.self) { _ = try await raw.readResponse() }

            let client = try await HTTPTestClient.connect(port: node.port, timeout: .milliseconds(200))
            defer { client.close() }
            // A body shorter than announced: the server waits for the rest.
            await #expect(throws: TestClientError.self) {
                _ = try await client.send(.PUT, "/store/x", headers: [("Content-Length", "10")], body: [1, 2])
            }
        }
    }
}
