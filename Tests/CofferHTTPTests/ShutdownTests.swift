import CofferHTTP
import CofferTestKit
import NIOCore
import Testing

/// Graceful shutdown: idle connections close at once, a request in flight is allowed to finish (within the grace
/// period), and the listener stops accepting.
@Suite(.timeLimit(.minutes(1))) struct ShutdownTests {
    /// Reads `path` through a second server on the node's engine (the node's own server is shut down).
    private func readThroughNewServer(_ node: TestNode, _ path: String) async throws -> TestResponse {
        let server = CofferHTTPServer(
            store: node.engine, configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0),
            logger: TestNode.logger)
        let address = try await server.start()
        do {
            let client = try await HTTPTestClient.connect(port: address.port!)
            defer { client.close() }
            let response = try await client.send(.GET, path)
            await server.shutdown()
            return response
        } catch {
            await server.shutdown()
            throw error
        }
    }

    /// Starts a spilled upload and returns once the server is streaming it to a spill file.
    private func startUpload(_ node: TestNode, _ path: String, total: Int, first: [UInt8]) async throws -> RawConnection
    {
        let connection = try await node.raw()
        try await connection.send(RawRequest.head("PUT", path, [("Content-Length", "\(total)")]) + first)
        let started = await node.eventually { node.directory.blobFiles().contains { $0.hasSuffix(".partial") } }
        #expect(started, "the upload never reached the store")
        return connection
    }

    @Test func inFlightUploadFinishesDuringShutdown() async throws {
        try await withNode(NodeOptions(inlineThreshold: 64 * 1024, shutdownGracePeriod: .seconds(20))) { node in
            let body = TestData.bytes(400 * 1024, seed: 111)
            let connection = try await startUpload(
                node, "/store/slow", total: body.count, first: Array(body[..<(200 * 1024)]))
            defer { connection.close() }
            let shutdown = Task { await node.server.shutdown() }
            // The listener goes away first; the upload in flight carries on.
            let refused = await node.eventually {
                node.server.localAddress == nil
            }
            #expect(refused)
            try await connection.send(Array(body[(200 * 1024)...]))
            let responses = try await connection.responsesUntilClose()
            #expect(responses.map(\.status) == [201])
            await shutdown.value
            // The listener is gone: a new connection is refused, or (another test's server may have been given the
            // port meanwhile, as happened on a loaded CI run) it reaches a server that is not this node.
            if let late = try? await node.client(timeout: .seconds(5)) {
                defer { late.close() }
                let answer = try? await late.send(.GET, "/store/slow")
                #expect(answer?.body != body, "the node still accepts connections after its shutdown")
            }
            #expect(try await readThroughNewServer(node, "/store/slow").body == body)
        }
    }

    /// A connection that has sent part of a request head when the server shuts down: NIO's pipeline handler closes
    /// it as idle, the parser then reports the incomplete request, and nothing may be written any more (a 400 written
    /// there tripped NIO's "Wrote in quiescing completed state" assertion, which kills a debug build).
    @Test func partialRequestHeadAtShutdownIsDroppedQuietly() async throws {
        try await withNode(NodeOptions(shutdownGracePeriod: .seconds(5))) { node in
            let connection = try await node.raw()
            defer { connection.close() }
            try await connection.send("GET /store/partial HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
            let other = try await node.client()
            #expect(try await other.send(.GET, "/health").status == 200)  // the partial head has been read
            other.close()
            await node.server.shutdown()
            #expect(try await connection.readUntilClose().isEmpty)
        }
    }

    @Test func idleConnectionsCloseAtOnce() async throws {
        try await withNode(NodeOptions(shutdownGracePeriod: .seconds(30))) { node in
            let client = try await node.client()
            defer { client.close() }
            #expect(try await client.send(.GET, "/health").status == 200)
            let clock = ContinuousClock()
            let started = clock.now
            await node.server.shutdown()
            // Well below the grace period: an idle keep-alive connection does not hold the shutdown.
            #expect(clock.now - started < .seconds(10))
            try await client.waitForClose()
        }
    }

    @Test func stalledUploadIsCutAfterTheGracePeriod() async throws {
        try await withNode(NodeOptions(inlineThreshold: 64 * 1024, shutdownGracePeriod: .milliseconds(300))) { node in
            let connection = try await startUpload(
                node, "/store/stalled", total: 400 * 1024, first: TestData.bytes(100 * 1024, seed: 112))
            defer { connection.close() }
            await node.server.shutdown()
            _ = try await connection.readUntilClose()
            #expect(await connection.isClosedByPeer)
            #expect(await node.eventually { node.directory.blobFiles().isEmpty })
            #expect(try await readThroughNewServer(node, "/store/stalled").status == 404)
        }
    }
}
