import CofferCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Turns one routed request into store calls and a response. Knows HTTP semantics (conditions, ranges, statuses);
/// knows nothing of how the store keeps bytes.
final class RequestProcessor: Sendable {
    let store: any BlobStore
    let configuration: HTTPServerConfiguration
    let logger: Logger
    let fallbackLoop: any EventLoop
    private let requestIDs = Atomic<UInt64>(0)

    init(store: any BlobStore, configuration: HTTPServerConfiguration, logger: Logger, fallbackLoop: any EventLoop) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.fallbackLoop = fallbackLoop
    }

    func nextRequestID() -> UInt64 { requestIDs.wrappingAdd(1, ordering: .relaxed).newValue }

    func process(_ request: BlobRequest, body: RequestBody, responder: Responder) async {
        var logger = self.logger
        logger[metadataKey: "request.id"] = "\(request.id)"
        logger[metadataKey: "blob.key"] = "\(request.key)"
        let operation: HTTPError.Operation
        switch request.method {
        case .POST: operation = .create
        case .PUT: operation = .replace
        case .DELETE: operation = .delete
        default: operation = .read
        }
        do {
            switch request.method {
            case .GET, .HEAD: try await read(request, responder: responder)
            case .PUT, .POST: try await write(request, body: body, responder: responder)
            case .DELETE: try await delete(request, responder: responder)
            default: responder.send(.methodNotAllowed(request.method, allow: request.family.methods))
            }
            logger.debug("request served", metadata: ["method": "\(request.method.rawValue)"])
        } catch let error as StoreError {
            let answer = HTTPError(error, operation: operation)
            if answer.status.code >= 500 {
                logger.warning("request failed", metadata: ["status": "\(answer.status.code)", "error": "\(error)"])
            }
            responder.send(answer, forHead: request.method == .HEAD)
        } catch let error as HTTPError {
            responder.send(error, forHead: request.method == .HEAD)
        } catch {
            // A failure while streaming a response: the connection was already aborted.
            logger.debug("request ended with error", metadata: ["error": "\(error)"])
            responder.send(.unexpected(error), forHead: request.method == .HEAD)
        }
    }

    private func readOptions(_ request: BlobRequest) -> ReadOptions {
        let headers = request.head.headers
        return ReadOptions(
            range: RequestHeaders.range(headers), ifMatch: RequestHeaders.etags(headers, "if-match"),
            ifNoneMatch: RequestHeaders.etags(headers, "if-none-match"), includeBody: request.method == .GET)
    }

    /// Answers a GET or HEAD on the spot when the store can without I/O (the index, or its cache of small blobs):
    /// no task, no thread hop. Returns `false` when the request needs the regular path. Event loop only.
    func answerNow(_ request: BlobRequest, responder: Responder) -> Bool {
        guard let outcome = store.readNow(request.key, options: readOptions(request)) else { return false }
        let forHead = request.method == .HEAD
        switch outcome {
        case .failure(let error):
            responder.send(HTTPError(error, operation: .read), forHead: forHead)
        case .success(let result):
            switch readHead(result) {
            case .failure(let error):
                responder.send(error, forHead: forHead)
            case .success(let head):
                switch result.body {
                case nil: responder.send(head.status, headers: head.headers)
                case .buffer(let bytes): responder.send(head.status, headers: head.headers, body: bytes)
                case .stream: return false  // never returned by readNow; the regular path would stream it
                }
            }
        }
        return true
    }

    /// The status and headers answering `result`, or the error to send instead.
    private func readHead(_ result: BlobRead) -> Result<(status: HTTPResponseStatus, headers: HTTPHeaders), HTTPError> {
        let info = result.info
        var headers = HTTPHeaders()
        headers.add(name: "ETag", value: "\"\(info.etag)\"")
        headers.add(name: "Last-Modified", value: HTTPDate.format(epochSeconds: info.lastModifiedMillis / 1000))
        headers.add(name: "Accept-Ranges", value: "bytes")
        let status: HTTPResponseStatus
        let length: Int64
        switch result.decision {
        case .notModified:
            return .success((.notModified, headers))
        case .preconditionFailed:
            return .failure(.readPreconditionFailed)
        case .rangeNotSatisfiable:
            return .failure(.rangeNotSatisfiable(size: info.size))
        case .full:
            status = .ok
            length = info.size
        case .partial(let range):
            status = .partialContent
            length = Int64(range.count)
            headers.add(name: "Content-Range", value: "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(info.size)")
        }
        headers.add(name: "Content-Type", value: info.contentType)
        headers.add(name: "Content-Length", value: "\(length)")
        return .success((status, headers))
    }

    private func read(_ request: BlobRequest, responder: Responder) async throws {
        let result = try await store.read(request.key, options: readOptions(request))
        let head = try readHead(result).get()
        switch result.body {
        case nil:
            responder.send(head.status, headers: head.headers)
        case .buffer(let bytes):
            responder.send(head.status, headers: head.headers, body: bytes)
        case .stream(let chunks):
            do {
                if let file = chunks.file {
                    try await responder.sendFile(head.status, headers: head.headers, file: file)
                } else {
                    try await responder.stream(head.status, headers: head.headers, body: chunks)
                }
            } catch {
                // Headers are gone already: the connection was aborted so the client sees a short body.
                logger.warning(
                    "streamed read aborted", metadata: ["blob.key": "\(request.key)", "error": "\(error)"])
            }
        }
    }

    private func write(_ request: BlobRequest, body: RequestBody, responder: Responder) async throws {
        let headers = request.head.headers
        var condition = WriteCondition.none
        if request.method == .POST {
            condition = .ifAbsent
        } else if let ifNoneMatch = RequestHeaders.etags(headers, "if-none-match") {
            guard ifNoneMatch == ["*"] else {
                throw HTTPError.badRequest("only If-None-Match: * is supported on writes")
            }
            condition = .ifAbsent
        } else if let ifMatch = RequestHeaders.etags(headers, "if-match") {
            condition = ifMatch == ["*"] ? .ifPresent : .ifMatch(ifMatch)
        }
        let contentType = headers.first(name: "content-type")?.trimmingSpaces
        if let contentType, contentType.utf8.count > 255 || contentType.isEmpty {
            throw HTTPError.badRequest("Content-Type must be 1 to 255 bytes")
        }
        // NIO's parser turns bytes that are not UTF-8 into U+FFFD: such a value could only be stored altered.
        if let contentType,
            contentType.unicodeScalars.contains(where: { $0 == "\u{FFFD}" || $0.value < 0x20 || $0.value == 0x7F })
        {
            throw HTTPError.badRequest("Content-Type must be valid UTF-8 without control characters")
        }
        let options = WriteOptions(
            condition: condition, contentType: contentType, expectedLength: request.contentLength,
            expectedMD5: try RequestHeaders.contentMD5(headers),
            expectedSHA256: try RequestHeaders.contentSHA256(headers))
        let result: WriteResult
        switch body {
        case .streamed(let parts): result = try await store.write(request.key, body: parts, options: options)
        case .buffered(let bytes):
            result = try await store.write(request.key, body: BufferedBody(buffer: bytes), options: options)
        case .none:
            result = try await store.write(request.key, body: BufferedBody(buffer: ByteBuffer()), options: options)
        }
        var response = HTTPHeaders()
        response.add(name: "ETag", value: "\"\(result.info.etag)\"")
        if result.created {
            response.add(name: "Location", value: request.family.prefix + percentEncodePath(request.location))
        }
        response.add(name: "Content-Length", value: "0")
        responder.send(request.family.successStatus(result.created ? .created : .replaced), headers: response)
    }

    private func delete(_ request: BlobRequest, responder: Responder) async throws {
        var condition = WriteCondition.none
        if let ifMatch = RequestHeaders.etags(request.head.headers, "if-match") {
            condition = ifMatch == ["*"] ? .ifPresent : .ifMatch(ifMatch)
        }
        _ = try await store.delete(request.key, condition: condition)
        let status = request.family.successStatus(.deleted)
        var response = HTTPHeaders()
        if status == .ok {
            let json = JSON.object([("deleted", request.location)])
            response.add(name: "Content-Type", value: "application/json")
            response.add(name: "Content-Length", value: "\(json.utf8.count)")
            responder.send(status, headers: response, body: ByteBuffer(string: json))
        } else {
            responder.send(status, headers: response)
        }
    }

    /// Percent-encodes everything but unreserved characters and `/`, for the `Location` header.
    private func percentEncodePath(_ location: String) -> String {
        var out = ""
        for byte in location.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"), UInt8(ascii: "/"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" : "") + hex
            }
        }
        return out
    }
}
