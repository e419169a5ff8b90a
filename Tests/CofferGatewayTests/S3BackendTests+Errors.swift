import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@testable import CofferGateway

// How S3 answers are read, without a server: error classification, Content-Range, dates, entity tags.
extension S3BackendTests {
    static func xml(_ code: String, _ message: String = "m") -> String {
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <Error><Code>\(code)</Code><Message>\(message)</Message><RequestId>r</RequestId></Error>
        """
    }

    @Test(
        "S3 error codes and statuses map to backend error kinds",
        arguments: [
            (404, "NoSuchKey", BackendError.Kind.notFound),
            (404, "NoSuchBucket", .notFound),
            (503, "SlowDown", .throttled),
            (503, "ServiceUnavailable", .throttled),
            (429, "TooManyRequests", .throttled),
            (400, "SlowDown", .throttled),
            (416, "InvalidRange", .rangeNotSatisfiable),
            (403, "AccessDenied", .rejected),
            (403, "SignatureDoesNotMatch", .rejected),
            (403, "InvalidAccessKeyId", .rejected),
            (400, "EntityTooLarge", .rejected),
            (400, "InvalidArgument", .rejected),
            (409, "BucketAlreadyExists", .rejected),
            (507, "XMinioStorageFull", .insufficientStorage),
            (500, "InternalError", .failed),
            (502, "BadGateway", .failed),
        ])
    func classification(status: Int, code: String, kind: BackendError.Kind) {
        let error = S3Backend.classify(status: status, body: Self.xml(code, "why &amp; how"), retryAfter: nil)
        #expect(error.kind == kind)
        #expect(error.code == code)
        #expect(error.status == status)
        #expect(error.message == "why & how")
    }

    @Test("answers without an XML body are classified by status; HEAD 404s are named after what is missing")
    func withoutBody() {
        #expect(S3Backend.classify(status: 404, body: "", retryAfter: nil, isHead: true).code == "NoSuchKey")
        let bucket = S3Backend.classify(status: 404, body: "", retryAfter: nil, isHead: true, isBucket: true)
        #expect(bucket.code == "NoSuchBucket")
        #expect(bucket.kind == .notFound)
        #expect(S3Backend.classify(status: 403, body: "", retryAfter: nil).kind == .rejected)
        #expect(S3Backend.classify(status: 503, body: "<html>busy</html>", retryAfter: nil).kind == .throttled)
        #expect(S3Backend.classify(status: 500, body: "oops", retryAfter: nil).message == "oops")
        #expect(S3Backend.classify(status: 507, body: "", retryAfter: nil).kind == .insufficientStorage)
    }

    @Test("Retry-After is kept for throttling, as seconds or as an HTTP date")
    func retryAfter() {
        let seconds = S3Backend.classify(status: 503, body: Self.xml("SlowDown"), retryAfter: "7")
        #expect(seconds.retryAfterSeconds == 7)
        let past = S3Backend.classify(status: 429, body: "", retryAfter: "Fri, 24 May 2013 00:00:00 GMT")
        #expect(past.retryAfterSeconds == 0)
        let future = S3Backend.classify(status: 503, body: "", retryAfter: "Fri, 01 Jan 2100 00:00:00 GMT")
        #expect((future.retryAfterSeconds ?? 0) > 1_000_000)
        #expect(S3Backend.classify(status: 503, body: "", retryAfter: "soon").retryAfterSeconds == nil)
        #expect(
            S3Backend.classify(status: 403, body: Self.xml("AccessDenied"), retryAfter: "5").retryAfterSeconds == nil)
    }

    @Test("XML entities in error messages are decoded; non-error documents are not parsed")
    func xmlEntities() {
        let body = S3ErrorBody(
            parsing: Self.xml("Weird", "a &lt;b&gt; &quot;c&quot; &apos;d&apos; &#65;&#x42; &bogus; &"))
        #expect(body?.code == "Weird")
        #expect(body?.message == "a <b> \"c\" 'd' AB &bogus; &")
        #expect(S3ErrorBody(parsing: "<ListBucketResult><Code>x</Code></ListBucketResult>") == nil)
        #expect(S3ErrorBody(parsing: "") == nil)
    }

    @Test("Content-Range, Last-Modified and ETag headers")
    func headers() {
        #expect(S3Backend.parseContentRange("bytes 0-9/443")! == (0..<10, 443))
        #expect(S3Backend.parseContentRange("bytes 100-100/101")! == (100..<101, 101))
        for bad in ["bytes */443", "bytes 5-4/10", "bytes 0-10/10", "items 0-1/2", "bytes 0-1/*", ""] {
            #expect(S3Backend.parseContentRange(bad) == nil, "\(bad)")
        }
        #expect(S3Backend.parseHTTPDate("Fri, 24 May 2013 00:00:00 GMT") == 1_369_353_600_000)
        #expect(S3Backend.parseHTTPDate("Thu, 01 Jan 1970 00:00:01 GMT") == 1000)
        #expect(S3Backend.parseHTTPDate("Tue, 29 Feb 2000 23:59:59 GMT") == 951_868_799_000)
        #expect(S3Backend.parseHTTPDate("2013-05-24T00:00:00Z") == nil)
        #expect(S3Backend.parseHTTPDate("Fri, 24 Foo 2013 00:00:00 GMT") == nil)
        #expect(S3Backend.unquote("\"abc\"") == "abc")
        #expect(S3Backend.unquote("W/\"abc\"") == "abc")
        #expect(S3Backend.unquote(" abc ") == "abc")

        var headers = HTTPHeaders()
        headers.add(name: "ETag", value: "\"d41d8cd98f00b204e9800998ecf8427e\"")
        headers.add(name: "Last-Modified", value: "Fri, 24 May 2013 00:00:00 GMT")
        headers.add(name: "Content-Type", value: "text/plain")
        #expect(
            S3Backend.object(from: headers, size: 0)
                == BackendObject(
                    size: 0, etag: "d41d8cd98f00b204e9800998ecf8427e", lastModifiedMillis: 1_369_353_600_000,
                    contentType: "text/plain"))
    }

    @Test("transport failures are .unavailable with a short code")
    func transport() {
        #expect(
            S3Backend.transportError(IOError(errnoCode: ECONNREFUSED, reason: "connect")).code == "ConnectionRefused")
        #expect(S3Backend.transportError(HTTPParserError.invalidEOFState).code == "ConnectionBroken")
        let timeout = S3Backend.transportError(HTTPClientError.deadlineExceeded)
        #expect(timeout.kind == .unavailable)
        #expect(timeout.code == "DeadlineExceeded")
        #expect(timeout.status == nil)
    }

    @Test("request paths: bucket and key URI-encoded, slashes kept")
    func paths() {
        let backend = S3Backend(
            endpoint: S3Endpoint(host: "h", port: 1, bucket: "bkt", accessKey: "a", secretKey: "s"),
            client: HTTPClient.shared)
        #expect(backend.path(for: nil) == "/bkt")
        #expect(backend.path(for: "object/a b") == "/bkt/object/a%20b")
        #expect(backend.path(for: "store/ü/#?%") == "/bkt/store/%C3%BC/%23%3F%25")
        #expect(backend.id == "s3://h:1/bkt")
    }

    @Test("deadlines: the first-byte timeout, plus time for the upload at the minimum rate")
    func deadlines() {
        let timeouts = S3Backend.Timeouts(firstByte: .seconds(30), minimumUploadRate: 1 << 20)
        let now = NIODeadline.now()
        let small = timeouts.deadline(uploadLength: 0) - now
        let big = timeouts.deadline(uploadLength: 64 << 20) - now
        #expect(small >= .seconds(29) && small <= .seconds(31))
        #expect(big >= .seconds(93) && big <= .seconds(95))
        #expect(timeouts.deadline(uploadLength: .max) > now + .seconds(1000))
        #expect(S3Backend.Timeouts().clientTimeout.connect == .seconds(2))
    }
}
