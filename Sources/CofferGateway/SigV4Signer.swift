import CofferCore
import Crypto
import FoundationEssentials
import NIOCore

/// AWS Signature Version 4 for header-based authentication (`Authorization: AWS4-HMAC-SHA256 ...`).
///
/// Pure and deterministic: the same request, credentials and date give the same signature, so the AWS published
/// examples serve as known-answer tests. The signer never sends anything; ``S3Backend`` builds the request, asks for
/// the headers to add, and sends it.
///
/// The secret key is kept private and never appears in ``description``.
public struct SigV4Signer: Sendable, CustomStringConvertible {
    /// `x-amz-content-sha256` for a body that is streamed and not hashed beforehand.
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// `x-amz-content-sha256` of an empty body: the hex SHA-256 of no bytes.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    /// The only algorithm this signer produces.
    public static let algorithm = "AWS4-HMAC-SHA256"

    public let accessKey: String
    private let secretKey: String
    public let region: String
    public let service: String

    /// - Parameters:
    ///   - region: the signing region; S3-compatible servers such as MinIO and moto accept `us-east-1`.
    ///   - service: the signing service name, `s3` for S3.
    public init(accessKey: String, secretKey: String, region: String = "us-east-1", service: String = "s3") {
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.region = region
        self.service = service
    }

    public var description: String { "SigV4Signer(\(accessKey), \(region)/\(service))" }

    /// What to sign: everything of an HTTP request that enters the canonical request.
    public struct Request: Sendable {
        public var method: String
        /// The request path exactly as sent, already URI-encoded (see ``SigV4Signer/uriEncodePath(_:)``); S3 paths
        /// are neither normalized nor encoded twice.
        public var path: String
        /// Query parameters, not encoded (the signer encodes them); a parameter without value has value `""`.
        public var query: [(name: String, value: String)]
        /// Headers to sign, as sent (`host` is required). `x-amz-date` and `x-amz-content-sha256` are added by
        /// ``SigV4Signer/sign(_:date:)`` when absent.
        public var headers: [(name: String, value: String)]
        /// Hex SHA-256 of the body, ``SigV4Signer/emptyPayloadHash`` or ``SigV4Signer/unsignedPayload``.
        public var payloadHash: String

        public init(
            method: String,
            path: String,
            query: [(name: String, value: String)] = [],
            headers: [(name: String, value: String)],
            payloadHash: String
        ) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.payloadHash = payloadHash
        }
    }

    /// The result of signing, with every intermediate step (the tests compare each with AWS's examples).
    public struct Signature: Sendable {
        public var canonicalRequest: String
        public var stringToSign: String
        /// Lowercase hex HMAC-SHA256 of ``stringToSign``.
        public var signature: String
        /// `host;range;x-amz-content-sha256;x-amz-date`, sorted.
        public var signedHeaders: String
        /// The value of the `Authorization` header.
        public var authorization: String
        /// The headers to add to the request before sending it: `x-amz-date` and `x-amz-content-sha256` when the
        /// request lacked them, and `authorization`.
        public var headersToAdd: [(name: String, value: String)]
    }

    /// Signs `request` as of `date`.
    public func sign(_ request: Request, date: Date) -> Signature {
        let timestamp = UTCTimestamp(date)
        var headers = request.headers
        var added: [(name: String, value: String)] = []
        if !headers.contains(where: { $0.name.lowercased() == "x-amz-date" }) {
            added.append((name: "x-amz-date", value: timestamp.amzDate))
        }
        if !headers.contains(where: { $0.name.lowercased() == "x-amz-content-sha256" }) {
            added.append((name: "x-amz-content-sha256", value: request.payloadHash))
        }
        headers += added

        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(headers)
        let canonicalRequest = [
            request.method.uppercased(),
            request.path.isEmpty ? "/" : request.path,
            Self.canonicalQuery(request.query),
            canonicalHeaders,
            signedHeaders,
            request.payloadHash,
        ].joined(separator: "\n")

        let scope = "\(timestamp.day)/\(region)/\(service)/aws4_request"
        let stringToSign = [
            Self.algorithm,
            timestamp.amzDate,
            scope,
            Self.hex(SHA256.hash(data: Array(canonicalRequest.utf8))),
        ].joined(separator: "\n")

        let key = signingKey(day: timestamp.day)
        let signature = Self.hex(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key))
        let authorization =
            "\(Self.algorithm) Credential=\(accessKey)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        added.append((name: "authorization", value: authorization))
        return Signature(
            canonicalRequest: canonicalRequest,
            stringToSign: stringToSign,
            signature: signature,
            signedHeaders: signedHeaders,
            authorization: authorization,
            headersToAdd: added
        )
    }

    /// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request")`.
    private func signingKey(day: String) -> SymmetricKey {
        var key = SymmetricKey(data: Array(("AWS4" + secretKey).utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key))
        }
        return key
    }

    /// Hex SHA-256 of `bytes`, for `x-amz-content-sha256` of a buffered body.
    public static func payloadHash(_ bytes: [UInt8]) -> String {
        hex(SHA256.hash(data: bytes))
    }

    /// Hex SHA-256 of the readable bytes of `buffer`, for `x-amz-content-sha256` of a buffered body.
    public static func payloadHash(_ buffer: ByteBuffer) -> String {
        var hasher = SHA256()
        buffer.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
        return hex(hasher.finalize())
    }

    static func hex(_ digest: some Sequence<UInt8>) -> String { Hex.lowercase(digest) }
}
