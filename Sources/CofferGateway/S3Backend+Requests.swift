import AsyncHTTPClient
import CofferCore
import FoundationEssentials
import NIOCore
import NIOHTTP1

// Building, signing and sending one S3 request; reading the metadata of a response.
extension S3Backend {
    /// A request body.
    enum Payload {
        case none
        case buffer(ByteBuffer)
        case stream(length: Int64, UploadTracker)
    }

    /// The request path of `key` in the bucket (or of the bucket when `key` is `nil`), URI-encoded.
    func path(for key: String?) -> String {
        let bucket = "/" + SigV4Signer.uriEncode(endpoint.bucket)
        guard let key else { return bucket }
        return bucket + "/" + SigV4Signer.uriEncodePath(key)
    }

    /// Signs and sends one request and returns the response head (with its body still to read), whatever its status.
    ///
    /// - Errors: ``BackendError`` `.unavailable` when no response came (refused, reset, timed out);
    ///   `CancellationError` when the task was cancelled; a streamed payload's own error, or
    ///   ``StoreError/incompleteBody`` when it had the wrong length.
    func send(
        _ method: HTTPMethod,
        key: String?,
        query: [(name: String, value: String)] = [],
        headers extraHeaders: [(name: String, value: String)] = [],
        payload: Payload = .none
    ) async throws -> HTTPClientResponse {
        let path = path(for: key)
        var url = endpoint.baseURL + path
        if !query.isEmpty { url += "?" + SigV4Signer.canonicalQuery(query) }

        let payloadHash: String
        var uploadLength: Int64 = 0
        switch payload {
        case .none:
            payloadHash = SigV4Signer.emptyPayloadHash
        case .buffer(let buffer):
            payloadHash = SigV4Signer.payloadHash(buffer)
            uploadLength = Int64(buffer.readableBytes)
        case .stream(let length, _):
            payloadHash = SigV4Signer.unsignedPayload
            uploadLength = length
        }
        let headers = [(name: "host", value: endpoint.hostHeader)] + extraHeaders
        let signature = signer.sign(
            SigV4Signer.Request(
                method: method.rawValue, path: path, query: query, headers: headers, payloadHash: payloadHash),
            date: Date()
        )

        var request = HTTPClientRequest(url: url)
        request.method = method
        for header in headers + signature.headersToAdd {
            request.headers.add(name: header.name, value: header.value)
        }
        switch payload {
        case .none:
            break
        case .buffer(let buffer):
            request.body = .bytes(buffer)
        case .stream(let length, let tracker):
            request.body = .stream(tracker.sequence, length: .known(length))
        }

        do {
            return try await client.execute(
                request, deadline: timeouts.deadline(uploadLength: uploadLength), logger: logger)
        } catch {
            if case .stream(_, let tracker) = payload, let bodyError = tracker.bodyError(after: error) {
                throw bodyError
            }
            if Task.isCancelled { throw CancellationError() }
            let mapped = Self.transportError(error)
            logger.debug(
                "request failed",
                metadata: ["method": "\(method.rawValue)", "key": "\(key ?? "")", "code": "\(mapped.code)"])
            throw mapped
        }
    }

    /// Reads the rest of a response body (a few bytes at most on success) so the connection can be reused.
    static func drain(_ response: HTTPClientResponse) async {
        _ = try? await response.body.collect(upTo: 1 << 20)
    }

    /// The metadata in a HEAD or GET response.
    static func object(from headers: HTTPHeaders, size: Int64) -> BackendObject {
        BackendObject(
            size: size,
            etag: headers.first(name: "etag").map(unquote),
            lastModifiedMillis: headers.first(name: "last-modified").flatMap(parseHTTPDate),
            contentType: headers.first(name: Self.contentTypeMetadata) ?? headers.first(name: "content-type")
        )
    }

    /// An entity tag without its quotes (and without a weak `W/` prefix).
    static func unquote(_ etag: String) -> String {
        var value = Substring(trimSpaces(etag))
        if value.hasPrefix("W/") { value = value.dropFirst(2) }
        if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = value.dropFirst().dropLast() }
        return String(value)
    }

    /// `bytes FIRST-LAST/TOTAL` as the half-open range served and the object's total size.
    static func parseContentRange(_ value: String) -> (range: Range<Int64>, size: Int64)? {
        let trimmed = trimSpaces(value)
        guard trimmed.hasPrefix("bytes ") else { return nil }
        let spec = trimmed.dropFirst("bytes ".count)
        guard let slash = spec.firstIndex(of: "/"), let dash = spec[..<slash].firstIndex(of: "-"),
            let first = Int64(spec[..<dash]), let last = Int64(spec[spec.index(after: dash)..<slash]),
            let size = Int64(spec[spec.index(after: slash)...]),
            first >= 0, last >= first, last < size
        else { return nil }
        return (first..<(last + 1), size)
    }

    /// An IMF-fixdate (`Fri, 24 May 2013 00:00:00 GMT`) in milliseconds since the epoch.
    static func parseHTTPDate(_ value: String) -> Int64? {
        let parts = value.split(separator: " ")
        guard parts.count == 6, parts[5] == "GMT", let day = Int64(parts[1]), let year = Int64(parts[3]) else {
            return nil
        }
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        guard let monthIndex = months.firstIndex(where: { $0 == parts[2] }) else { return nil }
        let time = parts[4].split(separator: ":")
        guard time.count == 3, let hour = Int64(time[0]), let minute = Int64(time[1]), let second = Int64(time[2]),
            (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        let days = UTCCalendar.days(year: year, month: Int64(monthIndex + 1), day: day)
        return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000
    }
}
