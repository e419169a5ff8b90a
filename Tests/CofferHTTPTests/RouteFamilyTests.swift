import CofferTestKit
import NIOHTTP1
import Testing

/// `/object/<id>` and `/api/fileserver/<name>`, the separation of the three namespaces, `/health`, and unknown
/// routes.
@Suite(.timeLimit(.minutes(1))) struct RouteFamilyTests {
    @Test func objectRoute() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let v1 = TestData.bytes(777, seed: 21)
            let created = try await client.send(.PUT, "/object/Abc123", body: v1)
            #expect(created.status == 201)
            #expect(created.header("etag") == Digests.etag(v1))
            #expect(created.header("location") == "/object/Abc123")
            let v2 = TestData.bytes(10, seed: 22)
            #expect(try await client.send(.PUT, "/object/Abc123", body: v2).status == 204)
            let read = try await client.send(.GET, "/object/Abc123")
            #expect(read.status == 200)
            #expect(read.body == v2)
            #expect(read.header("etag") == Digests.etag(v2))
            let head = try await client.send(.HEAD, "/object/Abc123")
            #expect(head.status == 200)
            #expect(head.header("content-length") == "10")
            #expect(head.body.isEmpty)
            let ranged = try await client.send(.GET, "/object/Abc123", headers: [("Range", "bytes=2-4")])
            #expect(ranged.status == 206)
            #expect(ranged.body == Array(v2[2...4]))

            let post = try await client.send(.POST, "/object/Abc123", body: TestData.text("x"))
            #expect(post.status == 405)
            #expect(post.isJSONError("method_not_allowed"))
            #expect(post.header("allow")?.contains("POST") == false)
            #expect(post.header("allow")?.contains("PUT") == true)
            #expect(try await client.send(.GET, "/object/Abc123").body == v2)

            #expect(try await client.send(.DELETE, "/object/Abc123").status == 204)
            #expect(try await client.send(.GET, "/object/Abc123").status == 404)
            #expect(try await client.send(.DELETE, "/object/Abc123").status == 404)
        }
    }

    @Test(arguments: [
        "/object/", "/object/abc-def", "/object/abc_def", "/object/a.b", "/object/a/b", "/object/%C3%A9",
        "/object/" + String(repeating: "a", count: 33), "/object/abc%20", "/object/a%2Fb",
    ])
    func invalidObjectIDsAre400(path: String) async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            for method in [HTTPMethod.PUT, .GET, .HEAD, .DELETE] {
                let response = try await client.send(method, path, body: method == .PUT ? TestData.text("x") : nil)
                #expect(response.status == 400, "\(method) \(path)")
                if method != .HEAD { #expect(response.isJSONError("invalid_location"), "\(method) \(path)") }
            }
            #expect(node.engine.count == 0)
        }
    }

    @Test func longestObjectIDIsAccepted() async throws {
        try await withNode { node in
            let id = String(repeating: "Z", count: 32)
            let created = try await node.request(.PUT, "/object/\(id)", body: TestData.text("x"))
            #expect(created.status == 201)
            #expect(try await node.request(.PUT, "/object/7", body: TestData.text("y")).status == 201)
            #expect(try await node.request(.GET, "/object/\(id)").body == TestData.text("x"))
        }
    }

    @Test func fileserverRoute() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let v1 = TestData.bytes(123, seed: 31)
            let created = try await client.send(.PUT, "/api/fileserver/reports/q1.csv", body: v1)
            #expect(created.status == 201)
            #expect(created.header("location") == "/api/fileserver/reports/q1.csv")
            #expect(created.header("etag") == Digests.etag(v1))
            let v2 = TestData.bytes(321, seed: 32)
            #expect(try await client.send(.PUT, "/api/fileserver/reports/q1.csv", body: v2).status == 204)
            #expect(try await client.send(.GET, "/api/fileserver/reports/q1.csv").body == v2)
            #expect(try await client.send(.HEAD, "/api/fileserver/reports/q1.csv").header("content-length") == "321")
            #expect(try await client.send(.POST, "/api/fileserver/reports/q1.csv", body: v1).status == 405)

            let deleted = try await client.send(.DELETE, "/api/fileserver/reports/q1.csv")
            #expect(deleted.status == 200)
            #expect(deleted.header("content-type") == "application/json")
            #expect(deleted.json == ["deleted": "reports/q1.csv"])
            let again = try await client.send(.DELETE, "/api/fileserver/reports/q1.csv")
            #expect(again.status == 404)
            #expect(again.isJSONError("not_found"))
            #expect(try await client.send(.GET, "/api/fileserver/reports/q1.csv").status == 404)
            #expect(try await client.send(.GET, "/api/fileserver/a//b").status == 400)
        }
    }

    @Test func familiesAreSeparateNamespaces() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let store = TestData.text("store blob")
            let object = TestData.text("object blob")
            let file = TestData.text("file blob")
            #expect(try await client.send(.PUT, "/store/x", body: store).status == 201)
            #expect(try await client.send(.GET, "/object/x").status == 404)
            #expect(try await client.send(.GET, "/api/fileserver/x").status == 404)
            #expect(try await client.send(.PUT, "/object/x", body: object).status == 201)
            #expect(try await client.send(.PUT, "/api/fileserver/x", body: file).status == 201)
            #expect(try await client.send(.GET, "/store/x").body == store)
            #expect(try await client.send(.GET, "/object/x").body == object)
            #expect(try await client.send(.GET, "/api/fileserver/x").body == file)
            #expect(try await client.send(.DELETE, "/object/x").status == 204)
            #expect(try await client.send(.GET, "/store/x").body == store)
            #expect(try await client.send(.GET, "/api/fileserver/x").body == file)
            // "/store/object/x" is a store location, not the object.
            #expect(try await client.send(.GET, "/store/object/x").status == 404)
        }
    }

    @Test func health() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let response = try await client.send(.GET, "/health")
            #expect(response.status == 200)
            #expect(response.header("content-type") == "application/json")
            #expect(response.json == ["status": "ok"])
            let head = try await client.send(.HEAD, "/health")
            #expect(head.status == 200)
            #expect(head.body.isEmpty)
        }
    }

    @Test(arguments: ["/", "/nope", "/store", "/objects/a", "/api/fileserver", "/api/other/x", "/healthz", "/STORE/a"])
    func unknownPathsAre404JSON(path: String) async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let response = try await client.send(.GET, path)
            #expect(response.status == 404, "\(path)")
            #expect(response.isJSONError("not_found"), "\(path)")
            let put = try await client.send(.PUT, path, body: TestData.text("x"))
            #expect(put.status == 404, "\(path)")
            #expect(node.engine.count == 0)
        }
    }

    @Test func queryStringIsNotPartOfTheLocation() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            #expect(try await client.send(.PUT, "/store/q?version=1", body: TestData.text("x")).status == 201)
            #expect(try await client.send(.GET, "/store/q").body == TestData.text("x"))
        }
    }
}
