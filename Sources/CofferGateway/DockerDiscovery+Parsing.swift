import FoundationEssentials

/// A running MinIO container found by ``DockerDiscovery``: where its S3 API answers and with which keys.
///
/// ``description`` never shows the secret key; ``s3URL(bucket:)`` does (percent-encoded), so do not log that.
public struct DiscoveredNode: Sendable, Hashable, CustomStringConvertible {
    /// The container name without Docker's leading `/`, such as `amazin-object-storage-node-1`.
    public var name: String
    /// The full container id (64 hex digits).
    public var containerID: String
    /// The container's IP address on one of its networks, or the published host address (usually `127.0.0.1`)
    /// in host-port mode. An IPv6 address is given without brackets.
    public var host: String
    /// The S3 port: the container port, or the published host port in host-port mode.
    public var port: Int
    public var accessKey: String
    public var secretKey: String

    public init(name: String, containerID: String, host: String, port: Int, accessKey: String, secretKey: String) {
        self.name = name
        self.containerID = containerID
        self.host = host
        self.port = port
        self.accessKey = accessKey
        self.secretKey = secretKey
    }

    /// `host:port`, with an IPv6 host in brackets.
    public var authority: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The node as a `--backend` URL: `s3://ACCESS:SECRET@host:port/bucket`, with the keys percent-encoded (every
    /// byte but `A-Z a-z 0-9 - . _ ~`), so a key holding `:`, `@`, `/` or `=` survives parsing.
    public func s3URL(bucket: String = "coffer") -> String {
        let access = DockerClient.percentEncode(accessKey)
        let secret = DockerClient.percentEncode(secretKey)
        return "s3://\(access):\(secret)@\(authority)/\(bucket)"
    }

    /// `name (short id) at host:port`: no credentials.
    public var description: String {
        "\(name) (\(containerID.prefix(12))) at \(authority)"
    }
}

extension DockerDiscovery {
    /// One entry of `GET /containers/json`: only the fields discovery reads.
    struct ContainerSummary: Decodable, Sendable {
        var id: String
        var names: [String]?
        var state: String?

        enum CodingKeys: String, CodingKey {
            case id = "Id"
            case names = "Names"
            case state = "State"
        }
    }

    /// `GET /containers/{id}/json`: only the fields discovery reads.
    struct ContainerDetails: Decodable, Sendable {
        var id: String
        var name: String?
        var state: State?
        var config: Config?
        var networkSettings: NetworkSettings?

        struct State: Decodable, Sendable {
            var running: Bool?
            enum CodingKeys: String, CodingKey { case running = "Running" }
        }

        struct Config: Decodable, Sendable {
            var env: [String]?
            enum CodingKeys: String, CodingKey { case env = "Env" }
        }

        struct NetworkSettings: Decodable, Sendable {
            /// The legacy default-bridge address; empty on user-defined networks.
            var ipAddress: String?
            var networks: [String: Network]?
            /// `"9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}]`; `null` for an exposed, unpublished port.
            var ports: [String: [PortBinding]?]?

            enum CodingKeys: String, CodingKey {
                case ipAddress = "IPAddress"
                case networks = "Networks"
                case ports = "Ports"
            }
        }

        struct Network: Decodable, Sendable {
            var ipAddress: String?
            enum CodingKeys: String, CodingKey { case ipAddress = "IPAddress" }
        }

        struct PortBinding: Decodable, Sendable {
            var hostIP: String?
            var hostPort: String?
            enum CodingKeys: String, CodingKey {
                case hostIP = "HostIp"
                case hostPort = "HostPort"
            }
        }

        enum CodingKeys: String, CodingKey {
            case id = "Id"
            case name = "Name"
            case state = "State"
            case config = "Config"
            case networkSettings = "NetworkSettings"
        }
    }

    /// Why a matching running container is not a node (logged once per container and reason).
    struct SkipReason: Error, Hashable, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// The `filters` query value: `{"name":["FILTER"],"status":["running"]}`.
    static func filtersJSON(nameFilter: String) -> String {
        struct Filters: Encodable {
            var name: [String]
            var status: [String]
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let data = try! encoder.encode(Filters(name: [nameFilter], status: ["running"]))
        return String(decoding: data, as: UTF8.self)
    }

    /// Docker's name filter is a regular expression over the names: keep only names that contain `filter` as text.
    static func matches(names: [String], filter: String) -> Bool {
        names.contains { stripSlash($0).contains(filter) }
    }

    static func stripSlash(_ name: String) -> String {
        name.hasPrefix("/") ? String(name.dropFirst()) : name
    }

    /// The value of each `NAME=VALUE` entry (split at the first `=`, so values may hold `=`); a later entry wins.
    static func environment(_ entries: [String]) -> [String: String] {
        var environment: [String: String] = [:]
        for entry in entries {
            guard let equals = entry.firstIndex(of: "=") else { continue }
            environment[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        return environment
    }

    /// `MINIO_ROOT_USER`/`MINIO_ROOT_PASSWORD` when both are set and non-empty, else
    /// `MINIO_ACCESS_KEY`/`MINIO_SECRET_KEY` likewise, else `nil`.
    static func credentials(fromEnv entries: [String]) -> (accessKey: String, secretKey: String)? {
        let environment = environment(entries)
        for (userName, secretName) in [
            ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"), ("MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"),
        ] {
            if let user = environment[userName], let secret = environment[secretName], !user.isEmpty, !secret.isEmpty {
                return (user, secret)
            }
        }
        return nil
    }

    /// The container's address on `network` when given, else on the first network (by name) that gave it one,
    /// else the legacy top-level `IPAddress`.
    static func containerIP(
        _ settings: ContainerDetails.NetworkSettings?, network: String?
    ) throws(SkipReason)
        -> String
    {
        let networks = settings?.networks ?? [:]
        if let network {
            guard let ip = networks[network]?.ipAddress, !ip.isEmpty else {
                throw SkipReason("no IP address on network '\(network)' (networks: \(networks.keys.sorted()))")
            }
            return ip
        }
        for name in networks.keys.sorted() {
            if let ip = networks[name]?.ipAddress, !ip.isEmpty { return ip }
        }
        if let ip = settings?.ipAddress, !ip.isEmpty { return ip }
        throw SkipReason("no IP address on any network (networks: \(networks.keys.sorted()))")
    }

    /// The published host address and port of container port `port`/tcp. An IPv4 binding is preferred; a wildcard
    /// binding (`0.0.0.0`, `::`, empty) is reached on loopback.
    static func publishedAddress(
        _ settings: ContainerDetails.NetworkSettings?, port: Int
    ) throws(SkipReason)
        -> (host: String, port: Int)
    {
        let bindings = (settings?.ports?["\(port)/tcp"] ?? nil) ?? []
        let usable = bindings.compactMap { binding -> (host: String, port: Int)? in
            guard let hostPort = binding.hostPort.flatMap({ Int($0) }), (1...65535).contains(hostPort) else {
                return nil
            }
            let hostIP = binding.hostIP ?? ""
            let host: String =
                switch hostIP {
                case "", "0.0.0.0": "127.0.0.1"
                case "::": "::1"
                default: hostIP
                }
            return (host, hostPort)
        }
        guard let chosen = usable.first(where: { !$0.host.contains(":") }) ?? usable.first else {
            throw SkipReason("container port \(port)/tcp is not published on the host")
        }
        return chosen
    }

    /// Turns an inspected container into a node, or says why it cannot be one.
    static func node(from details: ContainerDetails, options: Options) throws(SkipReason) -> DiscoveredNode {
        guard details.state?.running == true else { throw SkipReason("not running") }
        guard let credentials = credentials(fromEnv: details.config?.env ?? []) else {
            throw SkipReason(
                "no credentials: neither MINIO_ROOT_USER/MINIO_ROOT_PASSWORD nor MINIO_ACCESS_KEY/MINIO_SECRET_KEY set")
        }
        let host: String
        let port: Int
        if options.useHostPort {
            (host, port) = try publishedAddress(details.networkSettings, port: options.port)
        } else {
            host = try containerIP(details.networkSettings, network: options.network)
            port = options.port
        }
        return DiscoveredNode(
            name: stripSlash(details.name ?? details.id), containerID: details.id, host: host, port: port,
            accessKey: credentials.accessKey, secretKey: credentials.secretKey)
    }
}
