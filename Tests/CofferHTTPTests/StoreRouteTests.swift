import CofferTestKit
import Foundation
import NIOHTTP1
import Testing

/// The basic contract of `/store/<location>`: create, replace, read, HEAD, delete, and the statuses and headers of
/// each.
@Suite(.timeLimit(.minutes(1))) struct StoreRouteTests {
    @Test func postCreatesWithLocationAndETag() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let body = TestData.bytes(1000, seed: 7)
            let created = try await client.send(.POST, "/store/photos/cat.jpg", body: body)
            #expect(created.status == 201)
            #expect(created.header("location") == "/store/photos/cat.jpg")
            #expect(created.header("etag") == Digests.etag(body))

            let read = try await client.send(.GET, "/store/photos/cat.jpg")
            #expect(read.status == 200)
            #expect(read.body == body)
            #expect(read.header("content-length") == "1000")
            #expect(read.header("etag") == Digests.etag(body))
            #expect(read.header("content-type") == "application/octet-stream")
            let modified = try #require(read.header("last-modified"))
            let date = try #require(HTTPDates.parse(modified), "Last-Modified is not an IMF-fixdate: \(modified)")
            #expect(abs(date.timeIntervalSinceNow) < 300)
        }
    }

    @Test func postOnTakenLocationConflictsAndChangesNothing() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let first = TestData.text("first version")
            #expect(try await client.send(.POST, "/store/k", body: first).status == 201)
            let second = try await client.send(.POST, "/store/k", body: TestData.text("second"))
            #expect(second.status == 409)
            #expect(second.isJSONError())
            let read = try await client.send(.GET, "/store/k")
            #expect(read.status == 200)
            #expect(read.body == first)
            #expect(read.header("etag") == Digests.etag(first))
        }
    }

    @Test func putCreatesThenReplaces() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let first = TestData.bytes(300, seed: 1)
            let created = try await client.send(.PUT, "/store/doc", body: first)
            #expect(created.status == 201)
            #expect(created.header("etag") == Digests.etag(first))
            #expect(created.header("location") == "/store/doc")

            let second = TestData.bytes(500, seed: 2)
            let replaced = try await client.send(
                .PUT, "/store/doc", headers: [("Content-Type", "text/plain; charset=utf-8")], body: second)
            #expect(replaced.status == 204)
            #expect(replaced.header("etag") == Digests.etag(second))
            #expect(replaced.body.isEmpty)

            let read = try await client.send(.GET, "/store/doc")
            #expect(read.status == 200)
            #expect(read.body == second)
            #expect(read.header("content-type") == "text/plain; charset=utf-8")
            #expect(read.header("etag") == Digests.etag(second))
        }
    }

    @Test func headHasTheHeadersOfGetAndNoBody() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let body = TestData.bytes(4321, seed: 3)
            _ = try await client.send(.PUT, "/store/h", headers: [("Content-Type", "image/png")], body: body)
            let get = try await client.send(.GET, "/store/h")
            let head = try await client.send(.HEAD, "/store/h")
            #expect(head.status == 200)
            #expect(head.body.isEmpty)
            for name in ["content-length", "etag", "last-modified", "content-type", "accept-ranges"] {
                #expect(head.header(name) != nil, "HEAD lacks \(name)")
                #expect(head.header(name) == get.header(name), "\(name) differs between GET and HEAD")
            }
            #expect(head.header("content-length") == "4321")
            // The connection is still usable: the HEAD response carried no body bytes.
            #expect(try await client.send(.GET, "/store/h").body == body)
        }
    }

    @Test func deleteRemovesAndMissingBlobsAre404() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            _ = try await client.send(.PUT, "/store/gone", body: TestData.text("bye"))
            let deleted = try await client.send(.DELETE, "/store/gone")
            #expect(deleted.status == 204)
            #expect(deleted.body.isEmpty)

            let get = try await client.send(.GET, "/store/gone")
            #expect(get.status == 404)
            #expect(get.isJSONError("not_found"))
            #expect(try await client.send(.DELETE, "/store/gone").status == 404)
            let head = try await client.send(.HEAD, "/store/gone")
            #expect(head.status == 404)
            #expect(head.body.isEmpty)
            #expect(try await client.send(.GET, "/store/never/written").status == 404)
            #expect(try await client.send(.DELETE, "/store/never/written").isJSONError("not_found"))
            // A deleted location is free again for POST.
            #expect(try await client.send(.POST, "/store/gone", body: TestData.text("again")).status == 201)
        }
    }

    @Test(arguments: ["PATCH", "OPTIONS", "TRACE", "PROPFIND"])
    func otherMethodsAre405WithAllow(method: String) async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            _ = try await client.send(.PUT, "/store/m", body: TestData.text("x"))
            let response = try await client.send(HTTPMethod(rawValue: method), "/store/m")
            #expect(response.status == 405)
            #expect(response.isJSONError("method_not_allowed"))
            let allow = Set(
                (response.header("allow") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: " ") })
            #expect(allow == ["GET", "HEAD", "POST", "PUT", "DELETE"])
            #expect(try await client.send(.GET, "/store/m").body == TestData.text("x"))
        }
    }

    @Test func emptyBodiesAreValidBlobs() async throws {
        try await withNode { node in
            let client = try await node.client()
            defer { client.close() }
            let created = try await client.send(.PUT, "/store/empty", body: [])
            #expect(created.status == 201)
            #expect(created.header("etag") == "\"d41d8cd98f00b204e9800998ecf8427e\"")
            #expect(try await client.send(.POST, "/store/empty2", body: []).status == 201)
            let read = try await client.send(.GET, "/store/empty")
            #expect(read.status == 200)
            #expect(read.body.isEmpty)
            #expect(read.header("content-length") == "0")
            #expect(try await client.send(.HEAD, "/store/empty2").header("content-length") == "0")
        }
    }

    @Test func locationHeaderIsPercentEncoded() async throws {
        try await withNode { node in
            let created = try await node.request(.PUT, "/store/dir/na%20me%C3%A9", body: TestData.text("x"))
            #expect(created.status == 201)
            #expect(created.header("location") == "/store/dir/na%20me%C3%A9")
            // The same blob under another spelling of the same location.
            #expect(try await node.request(.GET, "/store/d%69r/na%20me%c3%a9").body == TestData.text("x"))
        }
    }
}

/// Parsing of IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
enum HTTPDates {
    static func parse(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.date(from: text)
    }
}
