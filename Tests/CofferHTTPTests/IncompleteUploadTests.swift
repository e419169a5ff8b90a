import CofferCore
import CofferTestKit
import Testing

/// A client that stops mid-body and closes: nothing is committed, the previous version stays readable, and the
/// spill file of a large upload is removed.
@Suite(.timeLimit(.minutes(1))) struct IncompleteUploadTests {
    /// Starts a spilled upload of which only `sent` bytes arrive, waits until the server has started its spill file,
    /// then closes the connection.
    private func abandonUpload(
        _ node: TestNode, _ head: [UInt8], parts: [[UInt8]], filesBefore: [String]
    ) async throws {
        let connection = try await node.raw()
        try await connection.send(head)
        for part in parts { try await connection.send(part) }
        // The upload is under way once a new (partial) spill file exists.
        let started = await node.eventually { node.directory.blobFiles().contains { $0.hasSuffix(".partial") } }
        #expect(started, "the server never started spilling the upload")
        connection.close()
        let cleaned = await node.eventually { node.directory.blobFiles() == filesBefore }
        #expect(cleaned, "left over after the failed upload: \(node.directory.blobFiles())")
    }

    @Test func contentLengthUploadCutShortKeepsThePreviousVersion() async throws {
        try await withNode(.spilling) { node in
            // The previous version is spilled too, so its file must survive while the new one is removed.
            let old = TestData.bytes(200 * 1024, seed: 81)
            #expect(try await node.request(.PUT, "/store/k", body: old).status == 201)
            let filesBefore = node.directory.blobFiles()
            #expect(filesBefore.count == 1)

            let announced = 500 * 1024
            let head = RawRequest.head("PUT", "/store/k", [("Content-Length", "\(announced)")])
            try await abandonUpload(
                node, head, parts: TestData.split(TestData.bytes(150 * 1024, seed: 82), every: 50 * 1024),
                filesBefore: filesBefore)

            let read = try await node.request(.GET, "/store/k")
            #expect(read.status == 200)
            #expect(read.body == old)
            #expect(read.header("etag") == Digests.etag(old))
            #expect(node.engine.count == 1)
        }
    }

    @Test func chunkedUploadCutShortKeepsThePreviousVersion() async throws {
        try await withNode(.spilling) { node in
            let old = TestData.text("small old version")
            _ = try await node.request(.PUT, "/store/k", body: old)
            let head = RawRequest.head("PUT", "/store/k", [("Transfer-Encoding", "chunked")])
            let chunks = TestData.split(TestData.bytes(200 * 1024, seed: 83), every: 40 * 1024).map(RawRequest.chunk)
            try await abandonUpload(node, head, parts: chunks, filesBefore: [])
            #expect(try await node.request(.GET, "/store/k").body == old)
        }
    }

    /// The client sends part of a body and then nothing: the idle timeout closes the connection, the upload is
    /// abandoned, its spill file removed, and the previous version stays.
    @Test func uploadStalledPastTheIdleTimeoutIsAbandoned() async throws {
        var options = NodeOptions.spilling
        options.idleTimeout = .seconds(2)  // a loaded machine may take a while between connecting and sending
        try await withNode(options) { node in
            let old = TestData.bytes(100 * 1024, seed: 85)
            // Through the engine: an HTTP client on a loaded machine could itself idle past the timeout.
            try await node.storeDirectly("store/stall", old)
            let filesBefore = node.directory.blobFiles()
            let connection = try await node.raw(timeout: .seconds(10))
            defer { connection.close() }
            try await connection.send(RawRequest.head("PUT", "/store/stall", [("Content-Length", "\(400 * 1024)")]))
            try await connection.send(TestData.bytes(150 * 1024, seed: 86))
            #expect(await node.eventually { node.directory.blobFiles().contains { $0.hasSuffix(".partial") } })
            // Now silence: the server must be the one to end it.
            _ = try await connection.readUntilClose()
            #expect(await connection.isClosedByPeer)
            #expect(await node.eventually { node.directory.blobFiles() == filesBefore })
            // Read through the engine: a new HTTP connection on a loaded machine could itself hit the 1 s timeout.
            let read = try await node.engine.read(BlobKey("store/stall")!, options: ReadOptions())
            var bytes: [UInt8] = []
            switch read.body {
            case .buffer(let buffer): bytes = Array(buffer.readableBytesView)
            case .stream(let chunks): for try await chunk in chunks { bytes += chunk.readableBytesView }
            case nil: break
            }
            #expect(bytes == old)
        }
    }

    /// A body trickling one byte every 300 ms: each byte is traffic, but not progress; the connection is cut like an
    /// idle one (an upload must send 1 KiB per idle timeout), and the previous version stays.
    @Test func tricklingUploadIsCutOffLikeAnIdleOne() async throws {
        var options = NodeOptions.spilling
        options.idleTimeout = .seconds(2)
        try await withNode(options) { node in
            let old = TestData.bytes(1000, seed: 87)
            try await node.storeDirectly("store/trickle", old)
            let connection = try await node.raw(timeout: .seconds(30))
            defer { connection.close() }
            try await connection.send(RawRequest.head("PUT", "/store/trickle", [("Content-Length", "1000")]))
            let clock = ContinuousClock()
            let started = clock.now
            var sent = 0
            // At most 20 s of trickling (the idle timeout is 2 s): a server that counts each byte never closes.
            while sent < 66, await connection.trySend([UInt8(sent)]) {
                sent += 1
                try await Task.sleep(for: .milliseconds(300))
                if await connection.isClosedByPeer { break }
            }
            _ = try await connection.readUntilClose()
            let elapsed = clock.now - started
            #expect(await connection.isClosedByPeer)
            #expect(sent < 60, "the server kept a connection sending one byte every 300 ms for \(elapsed)")
            let read = try await node.engine.read(BlobKey("store/trickle")!, options: ReadOptions())
            guard case .buffer(let buffer) = read.body else {
                Issue.record("expected the old version in memory")
                return
            }
            #expect(Array(buffer.readableBytesView) == old)
        }
    }

    @Test func postCutShortLeavesTheLocationFree() async throws {
        try await withNode(.spilling) { node in
            let head = RawRequest.head("POST", "/store/new", [("Content-Length", "\(1024 * 1024)")])
            try await abandonUpload(node, head, parts: [TestData.bytes(100 * 1024, seed: 84)], filesBefore: [])
            #expect(try await node.request(.GET, "/store/new").status == 404)
            #expect(try await node.request(.POST, "/store/new", body: TestData.text("now")).status == 201)
            #expect(try await node.request(.GET, "/store/new").text == "now")
        }
    }

    @Test func smallUploadCutShortCommitsNothing() async throws {
        try await withNode { node in
            let old = TestData.text("old")
            _ = try await node.request(.PUT, "/store/k", body: old)
            for head in [
                RawRequest.head("PUT", "/store/k", [("Content-Length", "100")]),
                RawRequest.head("PUT", "/store/k", [("Transfer-Encoding", "chunked")]),
                RawRequest.head("POST", "/store/other", [("Content-Length", "100")]),
            ] {
                let connection = try await node.raw()
                defer { connection.close() }
                let isChunked = String(decoding: head, as: UTF8.self).contains("chunked")
                try await connection.send(
                    head + (isChunked ? RawRequest.chunk(TestData.bytes(10)) : TestData.bytes(10)))
                // Stop sending; the server ends the request (and closes) once it sees the end of the stream.
                try await connection.channel.close(mode: .output)
                let responses = try await connection.responsesUntilClose()
                #expect(responses.allSatisfy { $0.status >= 400 }, "\(responses.map(\.status))")
            }
            #expect(node.engine.count == 1)
            #expect(try await node.request(.GET, "/store/k").body == old)
            #expect(try await node.request(.GET, "/store/other").status == 404)
        }
    }
}
