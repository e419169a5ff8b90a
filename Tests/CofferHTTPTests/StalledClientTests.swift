import CofferEngine
import CofferTestKit
import Testing

/// The idle timeout is about the client: a response the client stops reading closes the connection (writes stop
/// completing, and the server does not hold a descriptor and buffers for as long as the client cares to wait), while a
/// server that takes longer than the timeout to answer keeps it.
@Suite(.timeLimit(.minutes(1))) struct StalledClientTests {
    @Test func aSlowDiskDoesNotCloseTheConnectionOfAWaitingClient() async throws {
        let io = FaultInjectingFileIO()
        var options = NodeOptions()
        options.idleTimeout = .seconds(2)  // a loaded machine may take a while between connecting and sending
        options.engine = { $0.fileIO = io }
        try await withNode(options) { node in
            io.update { $0.syncDelay = .seconds(5) }  // every commit now outlasts the idle timeout, 2.5 times
            let client = try await node.client()
            defer { client.close() }
            let body = TestData.bytes(1000, seed: 22)
            #expect(try await client.send(.PUT, "/store/slow", body: body).status == 201)
            io.update { $0.syncDelay = .zero }
            #expect(try await client.send(.GET, "/store/slow").body == body)  // the same connection
            #expect(client.isActive)
        }
    }

    @Test(arguments: [false, true])
    func aClientThatStopsReadingAStreamedBodyIsClosed(sendfile: Bool) async throws {
        var options = NodeOptions.spilling
        options.idleTimeout = .seconds(1)
        if !sendfile { options.engine = { $0.fileSliceSize = 0 } }
        try await withNode(options) { node in
            // Far more than the kernel buffers on both sides hold (4 MiB send buffer at most here, 4 KiB receive).
            let body = TestData.bytes(16 << 20, seed: 21)
            #expect(try await node.request(.PUT, "/store/big", body: body).status == 201)

            let socket = try BlockingSocket(port: node.port, receiveBuffer: 4096)
            try socket.send("GET /store/big HTTP/1.1\r\nHost: test\r\n\r\n")
            // Reads nothing, from when the response has begun (a loaded machine may take a while) to well past the
            // idle timeout: the server's send buffer fills soon after the first bytes (on a loaded machine, slower),
            // and at most 2 s after its writes stop completing the server has closed.
            try await socket.waitForUnreadBytes()
            try await Task.sleep(for: .seconds(6))
            let received = try await socket.countUntilClosed()
            #expect(received > 0)
            #expect(received < body.count, "the server waited for the stalled client: \(received) bytes arrived")
        }
    }
}
