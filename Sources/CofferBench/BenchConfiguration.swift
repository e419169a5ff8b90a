import NIOCore

/// The operations a benchmark sends. `post` creates (409 when the key is taken), `put` creates or replaces.
public enum BenchOperation: String, CaseIterable, Codable, Sendable {
    case get, put, post, delete

    /// Position in `allCases`, for arrays indexed by operation.
    var index: Int {
        switch self {
        case .get: 0
        case .put: 1
        case .post: 2
        case .delete: 3
        }
    }

    /// Whether the request sends a body and may change what the key holds.
    var writesBody: Bool { self == .put || self == .post }
}

/// Why a benchmark setting was refused.
public struct BenchConfigurationError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The share of each operation: `get=90,put=10` (weights, not necessarily summing to 100).
public struct OperationMix: Sendable, Equatable, CustomStringConvertible {
    /// Weight per operation, indexed like `BenchOperation.allCases`.
    public private(set) var weights: [Int]

    /// Parses `op=weight` pairs separated by commas; operations not named get weight 0.
    public init(parsing text: String) throws(BenchConfigurationError) {
        var weights = [0, 0, 0, 0]
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pair = part.split(separator: "=", omittingEmptySubsequences: false)
            guard pair.count == 2, let operation = BenchOperation(rawValue: pair[0].lowercased()),
                let weight = Int(pair[1]), weight >= 0
            else {
                throw BenchConfigurationError(
                    "--mix: expected OP=WEIGHT[,OP=WEIGHT...] with OP in get, put, post, delete; got '\(part)'")
            }
            weights[operation.index] += weight
        }
        guard weights.reduce(0, +) > 0 else { throw BenchConfigurationError("--mix: the weights sum to 0") }
        self.weights = weights
    }

    /// The weight of `operation`.
    public func weight(of operation: BenchOperation) -> Int { weights[operation.index] }

    /// The sum of the weights.
    public var total: Int { weights.reduce(0, +) }

    /// The operation for `roll` in `0..<total`.
    func pick(_ roll: Int) -> BenchOperation {
        var rest = roll
        for operation in BenchOperation.allCases {
            let weight = weights[operation.index]
            if rest < weight { return operation }
            rest -= weight
        }
        return .get
    }

    public var description: String {
        BenchOperation.allCases.filter { weight(of: $0) > 0 }.map { "\($0.rawValue)=\(weight(of: $0))" }
            .joined(separator: ",")
    }
}

/// Body sizes: one size (`1KiB`) or an inclusive range (`1KiB-1MiB`), drawn uniformly per write.
public struct SizeRange: Sendable, Equatable, CustomStringConvertible {
    /// The smallest size, in bytes.
    public let lower: Int
    /// The largest size, in bytes (inclusive).
    public let upper: Int

    /// Sizes from `lower` to `upper` bytes, inclusive.
    public init(_ lower: Int, _ upper: Int) {
        self.lower = lower
        self.upper = upper
    }

    /// Parses `SIZE` or `SIZE-SIZE`; a size is bytes or a number with a unit (`KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB`).
    public init(parsing text: String) throws(BenchConfigurationError) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 1 || parts.count == 2, let lower = Self.bytes(parts[0]),
            let upper = parts.count == 2 ? Self.bytes(parts[1]) : lower
        else {
            throw BenchConfigurationError("--size: expected SIZE or SIZE-SIZE (e.g. 1KiB, 1KiB-1MiB); got '\(text)'")
        }
        guard lower <= upper else { throw BenchConfigurationError("--size: the range '\(text)' is empty") }
        self.init(lower, upper)
    }

    /// A byte count with an optional unit, or `nil`.
    static func bytes(_ text: Substring) -> Int? {
        let units: [(String, Int)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("KB", 1000), ("MB", 1_000_000),
            ("GB", 1_000_000_000), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("B", 1),
        ]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let value = Int(text.dropLast(suffix.count)), value >= 0, value <= Int.max / factor else {
                return nil
            }
            return value * factor
        }
        guard let value = Int(text), value >= 0 else { return nil }
        return value
    }

    public var description: String { lower == upper ? "\(lower)" : "\(lower)-\(upper)" }
}

/// Parses a duration: `30s`, `500ms`, `2m`, `1h`, `1.5s`, or a plain number of seconds.
public func parseBenchDuration(_ text: String) throws(BenchConfigurationError) -> Duration {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    var number = Substring(text)
    var factor = 1.0
    for (suffix, value) in units where text.hasSuffix(suffix) {
        number = text.dropLast(suffix.count)
        factor = value
        break
    }
    guard let value = Double(number), value >= 0, value.isFinite, value * factor < 1e9 else {
        throw BenchConfigurationError("expected a duration such as 30s, 500ms, 2m; got '\(text)'")
    }
    return .nanoseconds(Int64((value * factor * 1e9).rounded()))
}

/// Where requests go: `http://HOST[:PORT]/PREFIX`; each key is requested as `PREFIX/KEY`.
public struct BenchTarget: Sendable, Equatable, CustomStringConvertible {
    /// A host name or address (IPv6 without brackets).
    public let host: String
    public let port: Int
    /// The path before the key, without a trailing slash (`/store`, `/api/fileserver`, or empty).
    public let basePath: String

    /// A target from its parts; `basePath` has no trailing slash.
    public init(host: String, port: Int, basePath: String) {
        self.host = host
        self.port = port
        self.basePath = basePath
    }

    /// Parses an `http://` URL; `https` is not supported.
    public init(parsing url: String) throws(BenchConfigurationError) {
        guard url.hasPrefix("http://") else {
            throw BenchConfigurationError("--url: expected http://HOST:PORT/PATH; got '\(url)'")
        }
        let rest = url.dropFirst("http://".count)
        let authority = rest.prefix { $0 != "/" }
        var path = String(rest.dropFirst(authority.count))
        while path.hasSuffix("/") { path.removeLast() }
        var host = String(authority)
        var port = 80
        if let colon = authority.lastIndex(of: ":"), !authority[colon...].contains("]") {
            guard let parsed = Int(authority[authority.index(after: colon)...]), (1...65535).contains(parsed) else {
                throw BenchConfigurationError("--url: bad port in '\(url)'")
            }
            port = parsed
            host = String(authority[..<colon])
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw BenchConfigurationError("--url: no host in '\(url)'") }
        self.init(host: host, port: port, basePath: path)
    }

    /// The `Host` header value.
    var hostHeader: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public var description: String { "http://\(hostHeader)\(basePath)" }
}

/// Everything a benchmark run needs.
public struct BenchConfiguration: Sendable {
    /// Where requests go.
    public var target: BenchTarget
    /// The measured time (split into `rampStages` equal stages).
    public var duration: Duration = .seconds(10)
    /// Load before the measured time, not counted (the first stage's load).
    public var warmup: Duration = .zero
    /// Connections, each with one request at a time and its own slice of the key space.
    public var concurrency = 64
    /// Body sizes of writes.
    public var sizes = SizeRange(1024, 1024)
    /// The share of each operation.
    public var mix: OperationMix
    /// Size of the key space.
    public var keys = 1000
    /// Open loop: requests per second in total, spread over the connections; latency counts from the intended send
    /// time. `nil`: closed loop, each connection sends its next request as soon as the previous one is answered.
    public var rate: Double? = nil
    /// Stages the measured time is split into; stage `k` of `n` runs `k/n` of the concurrency (or of the rate).
    public var rampStages = 1
    /// Prepended to every key (letters and digits only, so keys are valid on every route family). Random by default,
    /// so every run starts from absent keys.
    public var keyPrefix: String
    /// PUT every key once before the warmup (so GETs find data); the default when the mix has GETs.
    public var prefill: Bool
    /// GET every key once after the run and check it like any other answer (unmeasured).
    public var finalCheck = true
    /// Event loop threads for the connections.
    public var eventLoops = System.coreCount
    /// How long after the end an unanswered request is given before its connection is closed.
    public var requestTimeout: Duration = .seconds(30)
    /// Seeds the choice of operations and keys.
    public var seed: UInt64

    /// The defaults for `target` and `mix`, with a random seed and key prefix; prefill when the mix has GETs.
    public init(target: BenchTarget, mix: OperationMix) {
        self.target = target
        self.mix = mix
        self.prefill = mix.weight(of: .get) > 0
        self.seed = UInt64.random(in: 0...UInt64.max)
        var generator = SplitMix64(seed: seed)
        self.keyPrefix = "b" + String(generator.next() & 0xFFFF_FFFF, radix: 16)
    }

    /// Refuses settings the run cannot honour.
    public func validate() throws(BenchConfigurationError) {
        guard duration > .zero else { throw BenchConfigurationError("--duration must be positive") }
        guard concurrency >= 1 else { throw BenchConfigurationError("--concurrency must be at least 1") }
        guard keys >= concurrency else {
            throw BenchConfigurationError("--keys must be at least --concurrency (each connection owns its keys)")
        }
        guard rampStages >= 1, rampStages <= concurrency || rate != nil else {
            throw BenchConfigurationError("--ramp must be between 1 and --concurrency")
        }
        if let rate { guard rate > 0, rate.isFinite else { throw BenchConfigurationError("--rate must be positive") } }
        guard !keyPrefix.isEmpty, keyPrefix.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
            throw BenchConfigurationError("--key-prefix must be letters and digits")
        }
        guard keyPrefix.count + 1 + String(keys - 1).count <= 32 else {
            throw BenchConfigurationError("--key-prefix is too long: keys must stay within 32 characters")
        }
        guard eventLoops >= 1 else { throw BenchConfigurationError("event loops must be at least 1") }
    }

    /// Connections active in `stage` (0-based).
    func activeConnections(stage: Int) -> Int {
        rate != nil ? concurrency : max(1, concurrency * (stage + 1) / rampStages)
    }

    /// Total requests per second in `stage`, in open-loop mode.
    func stageRate(stage: Int) -> Double? { rate.map { $0 * Double(stage + 1) / Double(rampStages) } }

    /// The key's name (letters and digits).
    func keyName(_ index: Int) -> String { "\(keyPrefix)k\(index)" }
}
