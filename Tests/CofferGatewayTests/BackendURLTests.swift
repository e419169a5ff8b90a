import CofferGateway
import Testing

/// `--backend` URLs: what they parse to, their defaults, the errors for bad ones, and that no id or message ever
/// carries a secret.
@Suite("BackendURL")
struct BackendURLTests {
    static func s3(_ url: String) throws -> S3Endpoint {
        guard case .s3(let endpoint) = try BackendURL(parsing: url) else {
            throw BackendURLError(url: url, reason: "not an s3 URL")
        }
        return endpoint
    }

    @Test("s3 URL with everything given")
    func s3Full() throws {
        let endpoint = try Self.s3("s3://minio:minio123@10.0.0.7:9001/photos")
        #expect(
            endpoint
                == S3Endpoint(
                    host: "10.0.0.7", port: 9001, bucket: "photos", accessKey: "minio", secretKey: "minio123",
                    region: "us-east-1"))
        #expect(endpoint.id == "s3://10.0.0.7:9001/photos")
        #expect(try BackendURL(parsing: "s3://minio:minio123@10.0.0.7:9001/photos").id == endpoint.id)
    }

    @Test("s3 defaults: port 9000, bucket coffer, region us-east-1; a trailing slash is no bucket")
    func s3Defaults() throws {
        for url in ["s3://a:b@node1", "s3://a:b@node1/", "S3://a:b@node1"] {
            let endpoint = try Self.s3(url)
            #expect(endpoint.host == "node1")
            #expect(endpoint.port == 9000)
            #expect(endpoint.bucket == "coffer")
            #expect(endpoint.region == "us-east-1")
            #expect(endpoint.id == "s3://node1:9000/coffer")
        }
        #expect(try Self.s3("s3://a:b@node1:9000/bk1?region=eu-west-1").region == "eu-west-1")
    }

    @Test("credentials are percent-decoded; a raw / or @ in the secret still parses (credentials end at the last @)")
    func s3Credentials() throws {
        let encoded = try Self.s3("s3://AKIA%2BX:wJalr%2FK7MD%40ENG%3A%25@h:1/bkt")
        #expect(encoded.accessKey == "AKIA+X")
        #expect(encoded.secretKey == "wJalr/K7MD@ENG:%")
        let raw = try Self.s3("s3://AKIA:wJalr/K7MD+ENG@h:1/bkt")
        #expect(raw.secretKey == "wJalr/K7MD+ENG")
        #expect(raw.host == "h")
        #expect(raw.bucket == "bkt")
        // Only the first colon separates the access key from the secret.
        #expect(try Self.s3("s3://a:b:c@h").secretKey == "b:c")
    }

    @Test("IPv6 hosts are bracketed in ids")
    func ipv6() throws {
        let endpoint = try Self.s3("s3://a:b@[::1]:9000/bkt")
        #expect(endpoint.host == "::1")
        #expect(endpoint.id == "s3://[::1]:9000/bkt")
        #expect(endpoint.baseURL == "http://[::1]:9000")
        #expect(try BackendURL(parsing: "http://[fe80::1]/x").id == "http://[fe80::1]:80/x")
    }

    @Test("http URLs: port 80 by default, prefix normalized to /a/b or empty")
    func http() throws {
        #expect(try BackendURL(parsing: "http://node:8080/store") == .http(host: "node", port: 8080, prefix: "/store"))
        #expect(try BackendURL(parsing: "http://node:8080/store/") == .http(host: "node", port: 8080, prefix: "/store"))
        #expect(
            try BackendURL(parsing: "http://node//api//fileserver/")
                == .http(host: "node", port: 80, prefix: "/api/fileserver"))
        #expect(try BackendURL(parsing: "http://node:81") == .http(host: "node", port: 81, prefix: ""))
        #expect(try BackendURL(parsing: "HTTP://node:81/") == .http(host: "node", port: 81, prefix: ""))
        #expect(
            try BackendURL(parsing: "http://127.0.0.1:8080/api/fileserver").id == "http://127.0.0.1:8080/api/fileserver"
        )
    }

    @Test(
        "invalid URLs are refused with a reason",
        arguments: [
            ("node:9000", "expected s3://"),
            ("ftp://node/x", "unknown scheme 'ftp'"),
            ("https://node/x", "https backends are not supported"),
            ("s3://node:9000/bkt", "needs credentials"),
            ("s3://onlykey@node", "ACCESS:SECRET"),
            ("s3://:secret@node", "access key is empty"),
            ("s3://key:@node", "secret key is empty"),
            ("s3://key:s%zz@node", "invalid percent escape"),
            ("s3://key:secret@/bkt", "host is missing"),
            ("s3://key:secret@node:0/bkt", "invalid port '0'"),
            ("s3://key:secret@node:70000/bkt", "invalid port '70000'"),
            ("s3://key:secret@node:abc/bkt", "invalid port 'abc'"),
            ("s3://key:secret@node/a/b", "just the bucket name"),
            ("s3://key:secret@node/Bad_Bucket", "may hold only lowercase"),
            ("s3://key:secret@node/ab", "3 to 63 characters"),
            ("s3://key:secret@node/-bkt", "start and end with a letter or digit"),
            ("s3://key:secret@node/bkt?foo=1", "unknown query parameter 'foo'"),
            ("s3://key:secret@[::1/bkt", "unterminated IPv6"),
            ("s3://key:secret@no de/bkt", "invalid host"),
            ("http://user:pw@node/x", "takes no credentials"),
            ("http://node/x?y=1", "takes no query string"),
            ("http://node/x#frag", "fragment"),
        ])
    func invalid(url: String, reason: String) {
        #expect {
            try BackendURL(parsing: url)
        } throws: { error in
            guard let error = error as? BackendURLError else { return false }
            return error.reason.contains(reason) && "\(error)".contains("invalid backend URL")
        }
    }

    @Test("no id, description or error message contains the secret")
    func noSecrets() throws {
        let secret = "TopSecret42"
        let url = "s3://ACCESS:\(secret)@node:9000/bkt"
        let parsed = try BackendURL(parsing: url)
        #expect(!parsed.id.contains(secret))
        #expect(!"\(parsed)".contains(secret))
        #expect(!"\(parsed)".contains("ACCESS"))
        guard case .s3(let endpoint) = parsed else {
            Issue.record("not s3")
            return
        }
        #expect(!"\(endpoint)".contains(secret))
        #expect(!String(reflecting: endpoint).contains(secret))
        for bad in [
            "s3://ACCESS:\(secret)@node:0/bkt", "s3://ACCESS:\(secret)@node/Bad_Bucket", "ACCESS:\(secret)@node",
        ] {
            do {
                _ = try BackendURL(parsing: bad)
                Issue.record("\(bad) parsed")
            } catch {
                #expect(!"\(error)".contains(secret))
                #expect(!error.url.contains(secret))
                #expect(error.url.contains("***"))
            }
        }
    }

    @Test("the same node reached with other credentials or region has the same id")
    func idIgnoresCredentials() throws {
        let first = try BackendURL(parsing: "s3://a:b@node:9000/bkt")
        let second = try BackendURL(parsing: "s3://c:d@node:9000/bkt?region=eu-west-1")
        #expect(first.id == second.id)
        #expect(first != second)
        #expect(
            S3Endpoint(host: "node", port: 9000, accessKey: "x", secretKey: "y").id
                == (try BackendURL(parsing: "s3://a:b@node").id))
    }
}
