import CofferCore
import NIOHTTP1

/// An error answered to a client: status, a stable code, a message, extra headers, and whether the connection must
/// close afterwards. Every error body is JSON `{"error": CODE, "message": TEXT}`. Every error status the HTTP layer
/// answers is made in this file: the request's own (400, 405, 413, 412, 416) below, the store's in ``init(_:operation:)``.
struct HTTPError: Error, Sendable {
    var status: HTTPResponseStatus
    var code: String
    var message: String
    var headers: [(String, String)] = []
    var closeConnection = false

    static func badRequest(_ message: String, code: String = "bad_request") -> HTTPError {
        HTTPError(status: .badRequest, code: code, message: message)
    }

    static func methodNotAllowed(_ method: HTTPMethod, allow: [HTTPMethod]) -> HTTPError {
        HTTPError(
            status: .methodNotAllowed, code: "method_not_allowed",
            message: "\(method.rawValue) is not allowed here",
            headers: [("Allow", allow.map(\.rawValue).joined(separator: ", "))])
    }

    static let noRoute = HTTPError(status: .notFound, code: "not_found", message: "no such route")

    static func payloadTooLarge(max: Int64) -> HTTPError {
        HTTPError(
            status: .payloadTooLarge, code: "too_large",
            message: "the body exceeds the maximum blob size of \(max) bytes",
            closeConnection: true)
    }

    /// A read whose `If-Match` does not hold.
    static let readPreconditionFailed = HTTPError(
        status: .preconditionFailed, code: "precondition_failed", message: "If-Match does not hold")

    /// A range outside a blob of `size` bytes.
    static func rangeNotSatisfiable(size: Int64) -> HTTPError {
        HTTPError(
            status: .rangeNotSatisfiable, code: "range_not_satisfiable",
            message: "the range is outside the blob of \(size) bytes", headers: [("Content-Range", "bytes */\(size)")])
    }

    /// For anything that is not a ``StoreError``.
    static func unexpected(_ error: any Error) -> HTTPError {
        if let error = error as? HTTPError { return error }
        return HTTPError(status: .internalServerError, code: "internal_error", message: "internal error")
    }

    var jsonBody: String { JSON.object([("error", code), ("message", message)]) }
}

extension HTTPError {
    /// What a store operation was, for the few errors whose status depends on it.
    enum Operation: Sendable {
        case read, create, replace, delete
    }

    /// The one mapping from store errors to HTTP statuses.
    init(_ error: StoreError, operation: Operation) {
        self.code = error.identifier
        self.message = error.message
        switch error {
        case .notFound: status = .notFound
        case .alreadyExists:
            // POST's "create only if absent" is a conflict; a PUT with If-None-Match: * is a failed precondition.
            status = operation == .create ? .conflict : .preconditionFailed
            if operation != .create { code = "precondition_failed" }
        case .preconditionFailed: status = .preconditionFailed
        case .invalidKey, .digestMismatch: status = .badRequest
        case .incompleteBody:
            status = .badRequest
            closeConnection = true
        case .tooLarge:
            status = .payloadTooLarge
            closeConnection = true
        case .insufficientStorage: status = .insufficientStorage
        case .corrupt, .io: status = .internalServerError
        case .badGateway: status = .badGateway
        case .unavailable, .busy:
            status = .serviceUnavailable
            headers = [("Retry-After", "1")]
        default: status = .internalServerError
        }
    }
}
