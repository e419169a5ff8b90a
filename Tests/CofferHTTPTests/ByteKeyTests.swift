import CofferTestKit
import Testing

/// Names are opaque UTF-8 and compare by their bytes: spellings that Unicode calls canonically equivalent (which
/// Swift's `String` calls equal) are different blobs, in the index, in the read cache and after a restart.
@Suite(.timeLimit(.minutes(1))) struct ByteKeyTests {
    /// `café` precomposed (C3 A9) and decomposed (65 CC 81); `Å` as U+00C5, as A + U+030A, and as the Ångström sign
    /// U+212B (which NFC maps to U+00C5).
    static let spellings: [[String]] = [
        ["/store/caf%C3%A9", "/store/cafe%CC%81"],
        ["/store/%C3%85", "/store/A%CC%8A", "/store/%E2%84%AB"],
        ["/api/fileserver/%C3%85.txt", "/api/fileserver/A%CC%8A.txt"],
    ]

    @Test("canonically equivalent spellings are separate blobs, also after a restart")
    func equivalentSpellingsAreDistinct() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let first = try await TestNode.start(directory: directory)
        do {
            for group in Self.spellings {
                // The first spelling alone: the others are not found.
                #expect(try await first.request(.PUT, group[0], body: Array(group[0].utf8)).status == 201)
                for other in group.dropFirst() {
                    #expect(try await first.request(.GET, other).status == 404, "\(other) read \(group[0])")
                    #expect(try await first.request(.HEAD, other).status == 404)
                }
                // Each spelling its own blob: a PUT to another spelling creates (201), never replaces (204).
                for other in group.dropFirst() {
                    #expect(try await first.request(.PUT, other, body: Array(other.utf8)).status == 201, "\(other)")
                }
                for spelling in group {
                    #expect(try await first.request(.GET, spelling).body == Array(spelling.utf8))
                }
            }
            // Deleting one leaves the others.
            #expect(try await first.request(.DELETE, "/store/cafe%CC%81").status == 204)
            #expect(try await first.request(.GET, "/store/caf%C3%A9").body == Array("/store/caf%C3%A9".utf8))
        } catch {
            try? await first.stop()
            throw error
        }
        try await first.stop()

        let second = try await TestNode.start(directory: directory)
        do {
            #expect(try await second.request(.GET, "/store/cafe%CC%81").status == 404)
            #expect(try await second.request(.GET, "/store/caf%C3%A9").body == Array("/store/caf%C3%A9".utf8))
            for spelling in Self.spellings[1] + Self.spellings[2] {
                #expect(try await second.request(.GET, spelling).body == Array(spelling.utf8), "\(spelling)")
            }
        } catch {
            try? await second.stop()
            throw error
        }
        try await second.stop()
    }

    /// A Content-Type is returned as the bytes that came: canonically equivalent spellings are not merged (the engine
    /// interns content types), and bytes that are not UTF-8, which NIO's parser would alter, are refused with 400.
    @Test("content types come back byte for byte; invalid UTF-8 is refused")
    func contentTypeBytes() async throws {
        try await withNode { node in
            let composed = "text/caf\u{E9}"
            let decomposed = "text/cafe\u{301}"
            #expect(
                try await node.request(.PUT, "/store/t1", headers: [("Content-Type", composed)], body: [1]).status
                    == 201)
            #expect(
                try await node.request(.PUT, "/store/t2", headers: [("Content-Type", decomposed)], body: [2]).status
                    == 201)
            let first = try await node.request(.GET, "/store/t1")
            let second = try await node.request(.GET, "/store/t2")
            #expect(first.header("content-type").map { Array($0.utf8) } == Array(composed.utf8))
            #expect(second.header("content-type").map { Array($0.utf8) } == Array(decomposed.utf8))

            let connection = try await node.raw()
            defer { connection.close() }
            let request =
                Array("PUT /store/t3 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Type: text/".utf8)
                + [0xFF, 0xFE] + Array("\r\n\r\nx".utf8)
            try await connection.send(request)
            let answer = try await connection.readResponse()
            #expect(answer?.status == 400, "\(answer?.text ?? "no answer")")
            #expect(try await node.request(.GET, "/store/t3").status == 404)
        }
    }
}
