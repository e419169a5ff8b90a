import AsyncHTTPClient
import FoundationEssentials
import NIOCore
import NIOHTTP1
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// S3 error responses (`<Error><Code>…</Code><Message>…</Message></Error>`) and transport failures, classified as
// ``BackendError``.
extension S3Backend {
    /// The classified error of a non-2xx `response`, with its S3 code and message when the body has them.
    /// Reads (at most 64 KiB of) the body. A HEAD answer has no body: its code is made from the status
    /// (`NoSuchKey` for a 404 on a key, `NoSuchBucket` for a 404 on the bucket).
    func failure(_ response: HTTPClientResponse, key: String?, isHead: Bool) async -> BackendError {
        let status = Int(response.status.code)
        var text = ""
        if !isHead, let body = try? await response.body.collect(upTo: 64 * 1024) {
            text = String(buffer: body)
        }
        let error = Self.classify(
            status: status,
            body: text,
            retryAfter: response.headers.first(name: "retry-after"),
            isHead: isHead,
            isBucket: key == nil
        )
        if error.code == "NoSuchBucket" { markBucketMissing() }
        logger.debug(
            "S3 error",
            metadata: [
                "key": "\(key ?? "")", "status": "\(status)", "code": "\(error.code)", "message": "\(error.message)",
            ])
        return error
    }

    /// Classifies an S3 error answer. The S3 code decides where it is specific, the status otherwise:
    /// `NoSuchKey`/`NoSuchBucket` are `.notFound`, `SlowDown` and 429/503 `.throttled` (with `Retry-After`),
    /// `InvalidRange` `.rangeNotSatisfiable`, MinIO's `XMinioStorageFull` `.insufficientStorage`, `AccessDenied`,
    /// `SignatureDoesNotMatch` and other 4xx `.rejected`, other 5xx `.failed`.
    static func classify(
        status: Int,
        body: String,
        retryAfter: String?,
        isHead: Bool = false,
        isBucket: Bool = false
    ) -> BackendError {
        let parsed = S3ErrorBody(parsing: body)
        let code: String
        if let parsedCode = parsed?.code, !parsedCode.isEmpty {
            code = parsedCode
        } else if status == 404 {
            code = isBucket ? "NoSuchBucket" : "NoSuchKey"
        } else {
            code = "HTTP\(status)"
        }
        let kind: BackendError.Kind =
            switch code {
            case "NoSuchKey", "NoSuchBucket", "NoSuchVersion": .notFound
            case "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "TooManyRequests",
                "RequestLimitExceeded":
                .throttled
            case "InvalidRange": .rangeNotSatisfiable
            case "XMinioStorageFull", "StorageFull": .insufficientStorage
            case "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "EntityTooLarge",
                "RequestTimeTooSkewed":
                .rejected
            default: BackendError.kind(forStatus: status)
            }
        let message = parsed?.message ?? (body.isEmpty ? "HTTP \(status)" : String(body.prefix(200)))
        return BackendError(
            kind, status: status, code: code, message: message,
            retryAfterSeconds: kind == .throttled ? retryAfter.flatMap(parseRetryAfter) : nil)
    }

    /// `Retry-After` as seconds: delay-seconds, or an HTTP date turned into seconds from now (at least 0).
    static func parseRetryAfter(_ value: String) -> Int? {
        let trimmed = trimSpaces(value)
        if let seconds = Int(trimmed), seconds >= 0 { return seconds }
        guard let millis = parseHTTPDate(trimmed) else { return nil }
        let nowMillis = Int64(Date().timeIntervalSince1970 * 1000)
        return Int(max(0, (millis - nowMillis + 999) / 1000))
    }

    /// `text` without leading and trailing spaces and tabs.
    static func trimSpaces(_ text: some StringProtocol) -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = text.firstIndex(where: { !isSpace($0) }), let last = text.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(text[first...last])
    }

    /// A failure before any response: always `.unavailable` (the backend may be down), with a short code.
    static func transportError(_ error: any Error) -> BackendError {
        let code: String
        switch error {
        case let error as HTTPClientError:
            switch error {
            case .connectTimeout: code = "ConnectTimeout"
            case .deadlineExceeded: code = "DeadlineExceeded"
            case .readTimeout: code = "ReadTimeout"
            case .remoteConnectionClosed: code = "ConnectionClosed"
            default: code = "HTTPClientError"
            }
        case is NIOConnectionError: code = "ConnectFailed"
        case is HTTPParserError: code = "ConnectionBroken"
        case let error as IOError where error.errnoCode == ECONNREFUSED: code = "ConnectionRefused"
        case let error as IOError where error.errnoCode == ECONNRESET: code = "ConnectionReset"
        case is IOError: code = "IOError"
        default: code = String(describing: type(of: error))
        }
        return BackendError(.unavailable, code: code, message: String(describing: error))
    }

    /// Forgets that the bucket exists, so the next write creates it first.
    func markBucketMissing() {
        bucketReadyFlag.store(false, ordering: .releasing)
    }
}

/// The `Code` and `Message` of an S3 XML error document.
struct S3ErrorBody: Sendable, Hashable {
    var code: String?
    var message: String?

    /// `nil` when `xml` is not an S3 `<Error>` document.
    init?(parsing xml: String) {
        guard xml.contains("<Error>") || xml.contains("<Error ") else { return nil }
        code = Self.element("Code", in: xml)
        message = Self.element("Message", in: xml)
        guard code != nil || message != nil else { return nil }
    }

    /// The text of the first `<name>…</name>` in `xml`, with the predefined XML entities decoded.
    static func element(_ name: String, in xml: String) -> String? {
        guard let open = xml.firstRange(of: "<\(name)>"),
            let close = xml[open.upperBound...].firstRange(of: "</\(name)>")
        else { return nil }
        return decodeEntities(String(xml[open.upperBound..<close.lowerBound]))
    }

    /// `&lt; &gt; &quot; &apos; &amp;` and numeric references decoded.
    static func decodeEntities(_ text: String) -> String {
        guard text.contains("&") else { return text }
        var out = ""
        var rest = Substring(text)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            guard let semicolon = rest[amp...].firstIndex(of: ";") else {
                rest = rest[amp...]
                break
            }
            let entity = rest[rest.index(after: amp)..<semicolon]
            let replacement: String? =
                switch entity {
                case "lt": "<"
                case "gt": ">"
                case "quot": "\""
                case "apos": "'"
                case "amp": "&"
                default:
                    if entity.hasPrefix("#x") {
                        UInt32(entity.dropFirst(2), radix: 16).flatMap(Unicode.Scalar.init).map { String($0) }
                    } else if entity.hasPrefix("#") {
                        UInt32(entity.dropFirst()).flatMap(Unicode.Scalar.init).map { String($0) }
                    } else {
                        nil
                    }
                }
            out += replacement ?? String(rest[amp...semicolon])
            rest = rest[rest.index(after: semicolon)...]
        }
        return out + rest
    }
}
