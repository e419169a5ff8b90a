/// The namespaces of keys: a key is `<namespace>/<location>`, and each namespace is served under its own route. The
/// one table of them, used by the HTTP layer (routing) and by the gateway (mapping keys to a backend's routes).
public struct Namespace: Sendable, Hashable {
    /// The first segment of the keys (`store` in `store/a/b`).
    public let name: String
    /// The route the namespace is served under, without a trailing slash (`/store`, `/api/fileserver`).
    public let route: String

    public static let store = Namespace(name: "store", route: "/store")
    public static let object = Namespace(name: "object", route: "/object")
    public static let fileserver = Namespace(name: "fileserver", route: "/api/fileserver")

    public static let all: [Namespace] = [.store, .object, .fileserver]

    /// The key of `location` in this namespace.
    public func key(_ location: String) -> String { name + "/" + location }

    /// The namespace of `key` and the location in it, or `nil` for a key outside the namespaces.
    public static func split(_ key: String) -> (namespace: Namespace, location: Substring)? {
        for namespace in all {
            let start = namespace.name + "/"
            if key.hasPrefix(start), key.utf8.count > start.utf8.count {
                return (namespace, key.dropFirst(start.count))
            }
        }
        return nil
    }
}
