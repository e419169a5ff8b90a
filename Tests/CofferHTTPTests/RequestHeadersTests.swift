import NIOHTTP1
import Testing

@testable import CofferHTTP

/// The header helpers the routes rely on, without a server.
struct RequestHeadersTests {
    @Test(arguments: [
        ("", ""), ("   ", ""), ("\t \t", ""), ("5", "5"), (" 5", "5"), ("5\t", "5"), ("\t 12 \t", "12"),
        (" a b ", "a b"), (" é ", "é"), ("x", "x"),
    ])
    func trimmingSpacesDropsOnlyOuterSpacesAndTabs(input: String, expected: String) {
        #expect(input.trimmingSpaces == expected)
        #expect(("[" + input + "]").dropFirst().dropLast().trimmingSpaces == expected)
    }

    @Test func contentLengthToleratesSurroundingSpaceAndRejectsGarbage() {
        #expect(RequestHeaders.contentLength(HTTPHeaders([("Content-Length", " 1024 ")])) == 1024)
        #expect(RequestHeaders.contentLength(HTTPHeaders([("Content-Length", "12x")])) == nil)
        #expect(RequestHeaders.contentLength(HTTPHeaders()) == nil)
        #expect(RequestHeaders.hasBody(HTTPHeaders([("Content-Length", "0")]), contentLength: 0) == false)
        #expect(RequestHeaders.hasBody(HTTPHeaders([("Transfer-Encoding", "chunked")]), contentLength: nil))
    }
}
