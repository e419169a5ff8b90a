import CofferTestKit
import Foundation
import Testing

/// A request refused before its body is read (413 for a body over the maximum, 409 for a POST to a taken location)
/// is answered at once, while the client is still sending. The client must still read that answer: a client that
/// sends its whole body before it reads (Python's http.client, as most do) saw the 413 for a 20 MiB body 0 times in
/// 20 when the node closed at once, because the kernel answers the bytes still arriving at a closed socket with a
/// reset, which discards the answer unread. The node lingers instead: it shuts its write side and drops what still
/// comes.
@Suite(.timeLimit(.minutes(2))) struct EarlyAnswerTests {
    /// Sends each request with http.client (the whole body first, then the answer) and prints one status per line,
    /// or `error <name>` when the exchange failed.
    static let client = """
        import http.client, sys
        port, method, path, size, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        body = b"x" * size
        for i in range(count):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                connection.request(method, path.replace("N", str(i)), body=body)
                response = connection.getresponse()
                response.read()
                print(response.status, flush=True)
            except Exception as error:
                print("error", type(error).__name__, flush=True)
            finally:
                connection.close()
        """

    /// Runs the Python client against `port` and returns what it printed, a line per request.
    static func python(port: Int, _ method: String, _ path: String, size: Int, count: Int) async throws -> [String] {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let output = directory.path + "/client.out"
        let child = try ChildProcess(
            "python3", ["-c", client, "\(port)", method, path, "\(size)", "\(count)"], logPath: output)
        let exit = try await child.waitForExit(within: .seconds(90))
        #expect(exit == .exited(0), "\(child.log)")
        return child.log.split(separator: "\n").map(String.init)
    }

    @Test("413 for a body over the maximum reaches a client that sends the whole body first")
    func tooLargeIsRead() async throws {
        try await withNode(NodeOptions(maxBlobSize: 1 << 20)) { node in
            let answers = try await Self.python(port: node.port, "PUT", "/store/bigN", size: 20 << 20, count: 6)
            #expect(answers == Array(repeating: "413", count: 6), "\(answers)")
            #expect(try await node.request(.GET, "/health").status == 200)
        }
    }

    @Test("409 for a POST to a taken location reaches a client that sends the whole body first")
    func conflictIsRead() async throws {
        try await withNode { node in
            #expect(try await node.request(.PUT, "/store/taken", body: [1]).status == 201)
            let answers = try await Self.python(port: node.port, "POST", "/store/taken", size: 20 << 20, count: 6)
            #expect(answers == Array(repeating: "409", count: 6), "\(answers)")
            #expect(try await node.request(.GET, "/store/taken").body == [1])
        }
    }
}
