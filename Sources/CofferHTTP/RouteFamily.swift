import CofferCore
import NIOHTTP1

/// One of the three route families. They share one handler; only the validation of the name and the status of a
/// successful write or delete differ, each in one table below.
struct RouteFamily: Sendable {
    enum Name: String, Sendable {
        case store, object, fileserver
    }

    let name: Name
    /// Keys of this family are `<namespace>/<location>`: the families are separate namespaces (``Namespace``).
    let namespace: Namespace
    let methods: [HTTPMethod]

    /// The path prefix, with its trailing slash.
    var prefix: String { namespace.route + "/" }

    /// Why a decoded name is refused, or `nil`. (The validation table.)
    func problem(with location: String) -> String? {
        switch name {
        case .store, .fileserver: return Location.problem(location)
        case .object: return Location.objectIDProblem(location)
        }
    }

    /// The status for a successful write or delete. (The status table.)
    func successStatus(_ outcome: Outcome) -> HTTPResponseStatus {
        switch (name, outcome) {
        case (_, .created): return .created
        case (_, .replaced): return .noContent
        case (.fileserver, .deleted): return .ok
        case (_, .deleted): return .noContent
        }
    }

    enum Outcome {
        case created, replaced, deleted
    }

    static let all: [RouteFamily] = [
        RouteFamily(name: .store, namespace: .store, methods: [.GET, .HEAD, .POST, .PUT, .DELETE]),
        RouteFamily(name: .object, namespace: .object, methods: [.GET, .HEAD, .PUT, .DELETE]),
        RouteFamily(name: .fileserver, namespace: .fileserver, methods: [.GET, .HEAD, .PUT, .DELETE]),
    ]
}

/// A request that passed routing and validation, ready for the store.
struct BlobRequest: Sendable {
    let family: RouteFamily
    let method: HTTPMethod
    let location: String
    let key: BlobKey
    let head: HTTPRequestHead
    let id: UInt64
    /// The `Content-Length`, parsed once by the connection.
    let contentLength: Int64?
}

enum Router {
    /// Routes `head` to a blob request, or to the error to answer.
    static func route(_ head: HTTPRequestHead, id: UInt64, contentLength: Int64?) -> Result<BlobRequest, HTTPError> {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard let family = RouteFamily.all.first(where: { path.hasPrefix($0.prefix) }) else {
            return .failure(.noRoute)
        }
        guard family.methods.contains(head.method) else {
            return .failure(.methodNotAllowed(head.method, allow: family.methods))
        }
        let raw = path.dropFirst(family.prefix.count)
        let location: String
        switch Location.percentDecode(raw) {
        case .success(let decoded): location = decoded
        case .failure:
            return .failure(.badRequest("the location is not valid percent-encoded UTF-8", code: "invalid_location"))
        }
        if let problem = family.problem(with: location) {
            return .failure(.badRequest(problem, code: "invalid_location"))
        }
        // A valid location (at most 1,024 bytes) under a namespace is well within a key's 2,048.
        let key = BlobKey(unchecked: family.namespace.key(location))
        return .success(
            BlobRequest(
                family: family, method: head.method, location: location, key: key, head: head, id: id,
                contentLength: contentLength))
    }
}
