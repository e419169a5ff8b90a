import CofferCore
import CofferEngine
import CofferEngineTesting
import CofferTestKit
import Testing

/// The idle timeout is about the client: a response the client stops reading closes the connection (writes stop
/// completing, and the server does not hold a descriptor and buffers for as long as the client cares to wait), while a
/// server that takes longer than the timeout to answer keeps it.
@Suite(.timeLimit(.minutes(1))) struct StalledClientTests {
    @Test func aSlowDiskDoesNotCloseTheConnectionOfAWaitingClient() async throws {
        let io = FaultInjectingFileIO()
        var options = NodeOptions()
        options.idleTimeout = .seconds(3)  // a loaded machine may take a while between connecting and sending
        options.engine = { $0.fileIO = io }
        try await withNode(options) { node in
            io.update { $0.syncDelay = .seconds(7) }  // every commit now outlasts the idle timeout, twice over
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
            // Stored through the engine: an HTTP client on a loaded machine could itself idle past the 1 s timeout.
            try await node.storeDirectly("store/big", body)

            let socket = try BlockingSocket(port: node.port, receiveBuffer: 4096)
            try socket.send("GET /store/big HTTP/1.1\r\nHost: test\r\n\r\n")
            // Reads nothing from when the response has begun (a loaded machine may take a while) until the server
            // has closed the connection: its writes stop completing once the kernel buffers are full.
            try await socket.waitForUnreadBytes()
            #expect(
                await node.eventually(within: .seconds(30)) { node.server.openConnections == 0 },
                "the server still holds the connection of a client that stopped reading")
            let received = try await socket.countUntilClosed()
            #expect(received > 0)
            #expect(received < body.count, "the server waited for the stalled client: \(received) bytes arrived")
        }
    }
}
