import CofferTestKit
import Testing

/// Conditional writes (`If-None-Match: *`, `If-Match: *`, `If-Match: "etag"`) and conditional reads
/// (`If-None-Match` → 304, `If-Match` → 412). A failed condition changes nothing.
@Suite(.timeLimit(.minutes(1))) struct ConditionalRequestTests {
    @Test func ifNoneMatchStarRefusesToOverwrite() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let original = TestData.text("original")
            let created = try await client.send(.PUT, "/store/c", headers: [("If-None-Match", "*")], body: original)
            #expect(created.status == 201)
            let refused = try await client.send(
                .PUT, "/store/c", headers: [("If-None-Match", "*")], body: TestData.text("other"))
            #expect(refused.status == 412)
            #expect(refused.isJSONError("precondition_failed"))
            #expect(try await client.send(.GET, "/store/c").body == original)
        }
    }

    @Test func ifMatchStarRequiresAnExistingBlob() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let refused = try await client.send(
                .PUT, "/store/c", headers: [("If-Match", "*")], body: TestData.text("x"))
            #expect(refused.status == 412)
            #expect(refused.isJSONError())
            #expect(try await client.send(.GET, "/store/c").status == 404)

            _ = try await client.send(.PUT, "/store/c", body: TestData.text("v1"))
            let replaced = try await client.send(
                .PUT, "/store/c", headers: [("If-Match", "*")], body: TestData.text("v2"))
            #expect(replaced.status == 204)
            #expect(try await client.send(.GET, "/store/c").body == TestData.text("v2"))
        }
    }

    @Test func ifMatchEtagReplacesOnlyTheMatchingVersion() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let v1 = TestData.text("version one")
            let etag1 = try #require(try await client.send(.PUT, "/store/c", body: v1).header("etag"))
            let wrong = try await client.send(
                .PUT, "/store/c", headers: [("If-Match", Digests.etag(TestData.text("nope")))],
                body: TestData.text("lost update"))
            #expect(wrong.status == 412)
            #expect(wrong.isJSONError("precondition_failed"))
            #expect(try await client.send(.GET, "/store/c").body == v1)

            let v2 = TestData.text("version two")
            let replaced = try await client.send(.PUT, "/store/c", headers: [("If-Match", etag1)], body: v2)
            #expect(replaced.status == 204)
            #expect(replaced.header("etag") == Digests.etag(v2))
            // The old etag no longer matches.
            let stale = try await client.send(.PUT, "/store/c", headers: [("If-Match", etag1)], body: v1)
            #expect(stale.status == 412)
            #expect(try await client.send(.GET, "/store/c").body == v2)
            // One of a list is enough.
            let listed = try await client.send(
                .PUT, "/store/c", headers: [("If-Match", "\"0123\", \(Digests.etag(v2))")], body: v1)
            #expect(listed.status == 204)
        }
    }

    @Test func ifNoneMatchWithAnEtagIsRefusedOnWrites() async throws {
        try await withNode { node in
            // Only `*` is meaningful on a write; a list of etags is a client error, not a silent overwrite.
            _ = try await node.request(.PUT, "/store/c", body: TestData.text("v1"))
            let response = try await node.request(
                .PUT, "/store/c", headers: [("If-None-Match", "\"abc\"")], body: TestData.text("v2"))
            #expect(response.status == 400)
            #expect(response.isJSONError("bad_request"))
            #expect(try await node.request(.GET, "/store/c").text == "v1")
        }
    }

    @Test func ifMatchOnAbsentBlobFails() async throws {
        try await withNode { node in
            let response = try await node.request(
                .PUT, "/store/none", headers: [("If-Match", Digests.etag([]))], body: TestData.text("x"))
            #expect(response.status == 412)
            #expect(try await node.request(.GET, "/store/none").status == 404)
        }
    }

    @Test func conditionalGets() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let body = TestData.bytes(2000, seed: 9)
            let etag = Digests.etag(body)
            _ = try await client.send(.PUT, "/store/g", body: body)

            let notModified = try await client.send(.GET, "/store/g", headers: [("If-None-Match", etag)])
            #expect(notModified.status == 304)
            #expect(notModified.body.isEmpty)
            #expect(notModified.header("etag") == etag)
            #expect(try await client.send(.GET, "/store/g", headers: [("If-None-Match", "*")]).status == 304)
            let other = try await client.send(.GET, "/store/g", headers: [("If-None-Match", "\"abc\"")])
            #expect(other.status == 200)
            #expect(other.body == body)

            let failed = try await client.send(.GET, "/store/g", headers: [("If-Match", "\"abc\"")])
            #expect(failed.status == 412)
            #expect(failed.isJSONError("precondition_failed"))
            let matched = try await client.send(.GET, "/store/g", headers: [("If-Match", etag)])
            #expect(matched.status == 200)
            #expect(matched.body == body)
            #expect(try await client.send(.HEAD, "/store/g", headers: [("If-None-Match", etag)]).status == 304)
            #expect(try await client.send(.HEAD, "/store/g", headers: [("If-Match", "\"abc\"")]).status == 412)
            // The connection survives all of them.
            #expect(try await client.send(.GET, "/store/g").body == body)
        }
    }

    @Test func conditionalDeletes() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let body = TestData.text("keep me")
            _ = try await client.send(.PUT, "/store/d", body: body)
            let refused = try await client.send(.DELETE, "/store/d", headers: [("If-Match", "\"abc\"")])
            #expect(refused.status == 412)
            #expect(try await client.send(.GET, "/store/d").body == body)
            let deleted = try await client.send(.DELETE, "/store/d", headers: [("If-Match", Digests.etag(body))])
            #expect(deleted.status == 204)
            #expect(try await client.send(.GET, "/store/d").status == 404)
        }
    }
}
