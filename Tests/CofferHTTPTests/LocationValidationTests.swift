import CofferTestKit
import NIOHTTP1
import Testing

/// Locations are percent-decoded, 1–1024 bytes of valid UTF-8, without control characters or empty, `.` or `..`
/// segments. Anything else is a 400 with a JSON body, and storage stays untouched. Targets are sent as written (the
/// client does no normalization).
@Suite(.timeLimit(.minutes(1))) struct LocationValidationTests {
    static let invalid: [String] = [
        "",  // empty
        String(repeating: "a", count: 1025),  // too long
        String(repeating: "%C3%A9", count: 512) + "a",  // 1025 bytes once decoded
        "a%00b",  // NUL
        "a%1Fb", "a%7Fb", "a%C2%85b",  // other control characters (C0, DEL, C1)
        "a%ZZ", "a%", "a%4", "%G0",  // broken escapes
        "a%C3%28", "%FF", "%C3", "%ED%A0%80",  // invalid UTF-8 (bad continuation, lone byte, truncated, surrogate)
        "a//b", "a/./b", "a/../b", "./a", "../a", "a/.", "a/..", "..", ".",  // empty, '.' and '..' segments
        "a/", "/a", "a/b/",  // trailing and leading slashes (empty segments)
        "a/%2E%2E/b", "%2e", "a%2F%2Fb", "a%2F",  // the same, percent-encoded
    ]

    @Test(arguments: invalid)
    func invalidLocationsAre400(location: String) async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            for prefix in ["/store/", "/api/fileserver/"] {
                let path = prefix + location
                for method in [HTTPMethod.PUT, .POST, .GET, .DELETE] where !(method == .POST && prefix != "/store/") {
                    let body: [UInt8]? = method == .PUT || method == .POST ? TestData.text("payload") : nil
                    let response = try await client.send(method, path, body: body)
                    #expect(response.status == 400, "\(method) \(path.prefix(60))")
                    #expect(response.isJSONError("invalid_location"), "\(method) \(path.prefix(60))")
                }
            }
            #expect(node.engine.count == 0)
            #expect(node.directory.blobFiles().isEmpty)
        }
    }

    @Test func dotSegmentsSentRawAreRefused() async throws {
        try await withNode { node in
            for target in ["/store/a/../b", "/store/a/./b", "/store/../store/b", "/store/a//b", "/store/b/"] {
                let connection = try await node.raw()
                defer { connection.close() }
                try await connection.send(RawRequest.with("PUT", target, body: TestData.text("x")))
                let response = try #require(try await connection.readResponse(), "\(target)")
                #expect(response.status == 400, "\(target)")
                #expect(response.isJSONError("invalid_location"), "\(target)")
            }
            #expect(node.engine.count == 0)
            #expect(try await node.request(.GET, "/store/b").status == 404)
        }
    }

    @Test func longestLocationIsAccepted() async throws {
        try await withNode { node in
            let ascii = String(repeating: "a", count: 1024)
            // 1024 bytes once decoded, though 3072 bytes on the wire.
            let encoded = String(repeating: "%C3%A9", count: 512)
            let client = try await node.client()
            defer { client.close() }
            #expect(try await client.send(.PUT, "/store/" + ascii, body: TestData.text("one")).status == 201)
            #expect(try await client.send(.PUT, "/store/" + encoded, body: TestData.text("two")).status == 201)
            #expect(try await client.send(.GET, "/store/" + ascii).body == TestData.text("one"))
            let lowercase = String(repeating: "%c3%a9", count: 512)
            #expect(try await client.send(.GET, "/store/" + lowercase).body == TestData.text("two"))
            let nested = Array(repeating: "abc", count: 256).joined(separator: "/")  // 1023 bytes
            #expect(try await client.send(.PUT, "/store/" + nested + "d", body: TestData.text("3")).status == 201)
        }
    }

    @Test func unicodeAndReservedCharactersAreValid() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            // Each location is sent once to write it and read back under another spelling of the same name.
            let cases: [(sent: String, same: String)] = [
                ("%E6%97%A5%E6%9C%AC/%F0%9F%98%80", "%e6%97%a5%e6%9c%ac/%f0%9f%98%80"),
                ("caf%C3%A9", "%63af%c3%a9"),
                ("a%2Fb", "a/b"),  // an encoded slash is a slash
                ("with%20space", "with%20space"),
                ("plus+sign", "plus%2Bsign"),  // '+' is not a space in a path
                ("...", "%2E%2E%2E"), (".hidden", "%2ehidden"), ("a..b", "a..b"),
                ("a/b/c/d/e", "a/b/c/d/e"),
                ("semi;colon=1,comma", "semi%3Bcolon%3D1%2Ccomma"),
            ]
            for (index, (sent, same)) in cases.enumerated() {
                let body = TestData.bytes(10 + index, seed: UInt64(index))
                let created = try await client.send(.PUT, "/store/" + sent, body: body)
                #expect(created.status == 201, "\(sent)")
                let read = try await client.send(.GET, "/store/" + same)
                #expect(read.status == 200, "\(same)")
                #expect(read.body == body, "\(same)")
            }
            // Distinct spellings of one location are one blob; "+" and "%20" are different ones.
            #expect(node.engine.count == cases.count)
        }
    }
}
