import NIOCore

/// What an answer says about the data, checked against the acknowledged history of its key.
public enum IntegrityVerdict: Sendable, Equatable {
    /// Consistent with what was acknowledged (or not a statement about the data: a 5xx, a dropped connection).
    case ok
    /// Bytes (or a claim of existence) that no acknowledged or in-doubt write produced.
    case invalid
    /// A key with an acknowledged write answered as absent.
    case lost
}

/// The acknowledged state of a slice of the key space, owned by one connection (so operations on a key never
/// overlap). Each key holds a small set of versions it may hold: one after an acknowledged answer, more while a write
/// or delete is in doubt (its answer was an error or never came). Version 0 means absent; a run's keys start absent.
public struct IntegrityModel: Sendable {
    /// The possible versions of each local key.
    private var possible: [[UInt64]]
    private var nextVersion: [UInt64]
    /// The global index of each local key (what the body pattern is derived from).
    let globalKeys: [UInt64]
    let sizes: SizeRange

    /// Tracks `globalKeys`, all absent.
    public init(globalKeys: [UInt64], sizes: SizeRange) {
        self.globalKeys = globalKeys
        self.sizes = sizes
        possible = Array(repeating: [0], count: globalKeys.count)
        nextVersion = Array(repeating: 1, count: globalKeys.count)
    }

    /// The number of keys.
    public var count: Int { globalKeys.count }

    /// The versions local key `key` may hold (0: absent).
    public func possibleVersions(_ key: Int) -> [UInt64] { possible[key] }

    /// The body of a new version of `key`, to be written.
    public mutating func newVersion(_ key: Int) -> BodyPatternHandle {
        let version = nextVersion[key]
        nextVersion[key] += 1
        return BodyPatternHandle(pattern: BodyPattern(key: globalKeys[key], version: version, sizes: sizes))
    }

    /// What a GET may return: the bodies of the possible present versions.
    func candidates(_ key: Int) -> [BodyPattern] {
        possible[key].filter { $0 != 0 }.map { BodyPattern(key: globalKeys[key], version: $0, sizes: sizes) }
    }

    /// Starts checking a GET of `key`.
    public func matcher(_ key: Int) -> BodyMatcherHandle {
        BodyMatcherHandle(matcher: BodyMatcher(candidates: candidates(key)))
    }

    /// A PUT (or POST) of `written` was answered with `status` (`nil`: no answer).
    public mutating func write(
        _ key: Int, _ written: BodyPatternHandle, create: Bool, status: Int?
    ) -> IntegrityVerdict {
        let version = written.pattern.version
        switch status {
        case .some(200..<300):
            // A create that succeeds on a key known to hold data: the server had lost it.
            let verdict: IntegrityVerdict = create && !possible[key].contains(0) ? .lost : .ok
            possible[key] = [version]
            return verdict
        case .some(409) where create:
            // Taken: a key known to be absent holds data nobody acknowledged.
            if possible[key] == [0] { return .invalid }
            possible[key].removeAll { $0 == 0 }
            return .ok
        default:
            // In doubt: the write may or may not have happened.
            if !possible[key].contains(version) { possible[key].append(version) }
            return .ok
        }
    }

    /// A DELETE was answered with `status` (`nil`: no answer).
    public mutating func delete(_ key: Int, status: Int?) -> IntegrityVerdict {
        switch status {
        case .some(200..<300):
            possible[key] = [0]
            return .ok
        case .some(404):
            let verdict: IntegrityVerdict = possible[key].contains(0) ? .ok : .lost
            possible[key] = [0]
            return verdict
        default:
            if !possible[key].contains(0) { possible[key].append(0) }
            return .ok
        }
    }

    /// A GET was answered with `status`; for a 2xx, `body` has seen the whole body.
    public mutating func read(_ key: Int, status: Int?, body: BodyMatcherHandle?) -> IntegrityVerdict {
        switch status {
        case .some(200..<300):
            let matched = body?.matcher.matched ?? []
            guard !matched.isEmpty else { return .invalid }
            possible[key] = matched.map(\.version)
            return .ok
        case .some(404):
            let verdict: IntegrityVerdict = possible[key].contains(0) ? .ok : .lost
            // Reported once: from now on the key is expected absent.
            possible[key] = [0]
            return verdict
        default:
            return .ok
        }
    }
}

/// A body to write: the version it is, and its bytes on demand.
public struct BodyPatternHandle: Sendable {
    let pattern: BodyPattern

    /// The body's length.
    public var size: Int { pattern.size }
    /// The version number.
    public var version: UInt64 { pattern.version }
    /// The bytes.
    public func makeBuffer(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        pattern.makeBuffer(allocator: allocator)
    }
}

/// A GET body being checked as it streams in.
public struct BodyMatcherHandle {
    var matcher: BodyMatcher

    /// Feeds the next chunk of the body.
    public mutating func feed(_ buffer: ByteBuffer) { matcher.feed(buffer) }
}
