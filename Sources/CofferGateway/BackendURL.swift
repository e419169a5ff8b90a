/// A `--backend` URL, parsed: an S3 bucket or a plain HTTP prefix.
///
/// - `s3://ACCESS:SECRET@host[:port][/bucket][?region=REGION]`: port defaults to 9000 (MinIO's), bucket to
///   ``S3Endpoint/defaultBucket``, region to `us-east-1`. The access and secret keys are percent-decoded (write a `/`
///   in a secret as `%2F`, though a raw `/` is accepted too: the credentials end at the last `@`).
/// - `http://host[:port][/prefix]`: port defaults to 80; the prefix is normalized to `/a/b` (or `""`). It is a base
///   path that may end in one family's route; ``HTTPBackend/path(for:)`` says how keys map onto it.
///
/// Hosts may be names, IPv4 addresses or bracketed IPv6 addresses (`[::1]`). ``id`` and ``description`` never contain
/// credentials, and neither do the messages of ``BackendURLError``.
public enum BackendURL: Sendable, Hashable, CustomStringConvertible {
    case s3(S3Endpoint)
    case http(host: String, port: Int, prefix: String)

    /// Parses `string`.
    ///
    /// - Errors: ``BackendURLError`` saying what is wrong, with any credentials in the URL redacted.
    public init(parsing string: String) throws(BackendURLError) {
        let redacted = Self.redact(string)
        func fail(_ reason: String) -> BackendURLError { BackendURLError(url: redacted, reason: reason) }

        guard let schemeEnd = string.firstRange(of: "://") else {
            throw fail("expected s3://ACCESS:SECRET@host:port/bucket or http://host:port/prefix")
        }
        let scheme = string[..<schemeEnd.lowerBound].lowercased()
        var rest = string[schemeEnd.upperBound...]
        if rest.contains("#") { throw fail("a fragment (#) is not allowed") }

        var query: Substring = ""
        if let questionMark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: questionMark)...]
            rest = rest[..<questionMark]
        }

        switch scheme {
        case "s3":
            guard let at = rest.lastIndex(of: "@") else {
                throw fail("an s3 backend needs credentials: s3://ACCESS:SECRET@host:port/bucket")
            }
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            guard let colon = userInfo.firstIndex(of: ":") else {
                throw fail("the credentials must be ACCESS:SECRET")
            }
            guard let accessKey = Self.percentDecode(userInfo[..<colon]),
                let secretKey = Self.percentDecode(userInfo[userInfo.index(after: colon)...])
            else { throw fail("the credentials hold an invalid percent escape") }
            guard !accessKey.isEmpty else { throw fail("the access key is empty") }
            guard !secretKey.isEmpty else { throw fail("the secret key is empty") }

            let (host, port, path) = try Self.splitAuthority(rest, defaultPort: 9000, fail: fail)
            let segments = path.split(separator: "/", omittingEmptySubsequences: true)
            guard segments.count <= 1 else {
                throw fail("the path must be just the bucket name, found '\(path)'")
            }
            let bucket = segments.first.map(String.init) ?? S3Endpoint.defaultBucket
            if let problem = S3Endpoint.bucketNameProblem(bucket) { throw fail(problem) }

            var region = S3Endpoint.defaultRegion
            for parameter in query.split(separator: "&") where !parameter.isEmpty {
                let pair = parameter.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard pair.count == 2, pair[0] == "region", !pair[1].isEmpty else {
                    throw fail("unknown query parameter '\(pair[0])' (only region=REGION is accepted)")
                }
                region = String(pair[1])
            }
            self = .s3(
                S3Endpoint(
                    host: host, port: port, bucket: bucket, accessKey: accessKey, secretKey: secretKey, region: region)
            )

        case "http":
            if rest.contains("@") { throw fail("an http backend takes no credentials") }
            guard query.isEmpty else { throw fail("an http backend takes no query string") }
            let (host, port, path) = try Self.splitAuthority(rest, defaultPort: 80, fail: fail)
            let prefix = path.split(separator: "/", omittingEmptySubsequences: true).map { "/" + $0 }.joined()
            self = .http(host: host, port: port, prefix: prefix)

        case "https":
            throw fail("https backends are not supported: use http:// on a trusted network")
        default:
            throw fail("unknown scheme '\(scheme)' (expected s3 or http)")
        }
    }

    /// The backend's identity for rendezvous hashing: `s3://host:port/bucket` or `http://host:port/prefix`.
    /// Never contains credentials.
    public var id: String {
        switch self {
        case .s3(let endpoint): endpoint.id
        case .http(let host, let port, let prefix): "http://\(S3Endpoint.hostForURL(host)):\(port)\(prefix)"
        }
    }

    public var description: String { id }

    /// Splits `host[:port][/path]`.
    private static func splitAuthority(
        _ authority: Substring,
        defaultPort: Int,
        fail: (String) -> BackendURLError
    ) throws(BackendURLError) -> (host: String, port: Int, path: Substring) {
        let slash = authority.firstIndex(of: "/") ?? authority.endIndex
        let hostPort = authority[..<slash]
        let path = authority[slash...]
        var host: Substring
        var portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw fail("unterminated IPv6 address") }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw fail("unexpected '\(after)' after the IPv6 address") }
                portText = after.dropFirst()
            }
        } else if let colon = hostPort.firstIndex(of: ":") {
            host = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
        } else {
            host = hostPort
        }
        guard !host.isEmpty else { throw fail("the host is missing") }
        let allowed = host.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: "_"),
                UInt8(ascii: ":"):
                true
            default: false
            }
        }
        guard allowed else { throw fail("invalid host '\(host)'") }
        var port = defaultPort
        if let portText {
            guard let value = Int(portText), (1...65_535).contains(value) else {
                throw fail("invalid port '\(portText)' (expected 1-65535)")
            }
            port = value
        }
        return (String(host), port, path)
    }

    /// `%XY` escapes decoded as UTF-8; `nil` when an escape is malformed or the result is not UTF-8.
    static func percentDecode(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                return nil
            }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// `string` with everything between `://` and the last `@` (the credentials) replaced by `***`.
    static func redact(_ string: String) -> String {
        guard let schemeEnd = string.firstRange(of: "://") else {
            guard let at = string.lastIndex(of: "@") else { return string }
            return "***" + string[at...]
        }
        let rest = string[schemeEnd.upperBound...]
        guard let at = rest.lastIndex(of: "@") else { return string }
        return string[..<schemeEnd.upperBound] + "***" + rest[at...]
    }
}

/// Why a `--backend` URL was refused. The URL in it has its credentials redacted.
public struct BackendURLError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The URL as given, with credentials replaced by `***`.
    public var url: String
    public var reason: String

    public init(url: String, reason: String) {
        self.url = url
        self.reason = reason
    }

    public var description: String { "invalid backend URL '\(url)': \(reason)" }
}
