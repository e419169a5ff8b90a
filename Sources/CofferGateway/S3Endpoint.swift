/// Where an ``S3Backend`` sends its requests and how it signs them: one bucket on one S3-compatible server, reached
/// with path-style URLs (`http://host:port/bucket/key`).
///
/// ``description`` and ``id`` never show the secret key.
public struct S3Endpoint: Sendable, Hashable, CustomStringConvertible {
    /// The bucket used when a URL names none.
    public static let defaultBucket = "coffer"
    /// The signing region used when a URL names none; MinIO and moto accept it.
    public static let defaultRegion = "us-east-1"

    public var host: String
    public var port: Int
    public var bucket: String
    public var accessKey: String
    public var secretKey: String
    public var region: String

    public init(
        host: String,
        port: Int,
        bucket: String = S3Endpoint.defaultBucket,
        accessKey: String,
        secretKey: String,
        region: String = S3Endpoint.defaultRegion
    ) {
        self.host = host
        self.port = port
        self.bucket = bucket
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.region = region
    }

    /// `s3://host:port/bucket`: the backend's identity for rendezvous hashing, the same however the endpoint was
    /// found (a `--backend` URL or Docker discovery). Credentials and region are not part of it.
    public var id: String { "s3://\(Self.hostForURL(host)):\(port)/\(bucket)" }

    public var description: String { id }

    /// `http://host:port`, the base every request URL starts with.
    public var baseURL: String { "http://\(Self.hostForURL(host)):\(port)" }

    /// The `Host` header: `host:port` (the port is always given, so the signature does not depend on defaults).
    var hostHeader: String { "\(Self.hostForURL(host)):\(port)" }

    /// `host`, with brackets around an IPv6 address.
    static func hostForURL(_ host: String) -> String {
        host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
    }

    /// Why `name` is not a valid S3 bucket name (3-63 characters of `a-z 0-9 . -`, starting and ending with a letter
    /// or digit), or `nil` when it is.
    public static func bucketNameProblem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        guard (3...63).contains(bytes.count) else {
            return "bucket name '\(name)' must be 3 to 63 characters long"
        }
        func isAlphanumeric(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
        guard bytes.allSatisfy({ isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }) else {
            return "bucket name '\(name)' may hold only lowercase letters, digits, '.' and '-'"
        }
        guard isAlphanumeric(bytes.first!), isAlphanumeric(bytes.last!) else {
            return "bucket name '\(name)' must start and end with a letter or digit"
        }
        return nil
    }
}
