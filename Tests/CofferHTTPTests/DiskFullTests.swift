import CofferTestKit
import Foundation
import NIOHTTP1
import Testing

/// A full disk seen through the API, on the small file system `scripts/with-small-fs.sh` mounts (`make test` runs the
/// suite through it): writes answer 507 with a JSON error and change nothing, reads go on, deletes still work, and
/// once the deleted space is compacted away writes succeed again.
@Suite struct DiskFullTests {
    @Test func fullDiskAnswers507AndKeepsServing() async throws {
        guard let mount = ProcessInfo.processInfo.environment["COFFER_SMALL_FS_HTTP"], !mount.isEmpty else {
            print("disk-full-http: COFFER_SMALL_FS_HTTP is not set (run through scripts/with-small-fs.sh); skipped")
            return
        }
        let directory = try TemporaryDirectory(under: mount)
        defer { directory.remove() }
        var options = NodeOptions(inlineThreshold: 32 * 1024)
        options.engine = { configuration in
            configuration.segmentSize = 256 * 1024
            configuration.reserveBytes = 1 << 20
            configuration.compactionInterval = nil
        }
        let node = try await TestNode.start(options, directory: directory)
        do {
            try await fillDeleteAndWriteAgain(node)
        } catch {
            try? await node.stop()
            throw error
        }
        try await node.stop()
    }

    private func fillDeleteAndWriteAgain(_ node: TestNode) async throws {
        var acked: [String: [UInt8]] = [:]
        var refused = 0
        var consecutive = 0
        var i = 0
        // Large (spilled) and small bodies until a write is refused, then small ones until 8 in a row are refused.
        while consecutive < 8 && i < 20_000 {
            let body = TestData.bytes(refused == 0 && i % 2 == 1 ? 300 * 1024 : 8 * 1024, seed: UInt64(i))
            let response = try await node.request(.PUT, "/store/full/\(i)", body: body)
            if response.status == 201 {
                acked["/store/full/\(i)"] = body
                consecutive = 0
            } else {
                #expect(response.status == 507)
                #expect(response.isJSONError("insufficient_storage"))
                refused += 1
                consecutive += 1
            }
            i += 1
        }
        print("disk-full-http: \(acked.count) blobs stored, then \(refused) PUTs answered 507")
        #expect(acked.count > 20)
        #expect(consecutive == 8)
        #expect(!node.directory.blobFiles().contains { $0.hasSuffix(".partial") })

        // Reads go on, byte-exact; a POST is refused too, and nothing appears where it was refused.
        let client = try await node.client()
        for (path, body) in acked {
            let response = try await client.send(.GET, path)
            #expect(response.status == 200)
            #expect(response.body == body)
        }
        client.close()
        let refusedPost = try await node.request(.POST, "/store/full/post", body: TestData.bytes(8 * 1024, seed: 1))
        #expect(refusedPost.status == 507)
        #expect(try await node.request(.GET, "/store/full/post").status == 404)

        // Deletes work on the full disk; compaction (the node runs it in the background) reclaims log space.
        for path in acked.keys.sorted().enumerated().filter({ $0.offset % 2 == 0 }).map(\.element) {
            #expect(try await node.request(.DELETE, path).status == 204)
            acked[path] = nil
        }
        _ = try await node.engine.compact(threshold: 0.2)
        let after = TestData.bytes(300 * 1024, seed: 77)
        #expect(try await node.request(.PUT, "/store/full/after", body: after).status == 201)
        acked["/store/full/after"] = after
        let reader = try await node.client()
        for (path, body) in acked {
            #expect(try await reader.send(.GET, path).body == body)
        }
        reader.close()
    }
}
