import CofferCore
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The offline check of a data directory (`coffer verify`): reads every segment and every live spill file and
/// verifies every record (header CRC, record CRC), every spill header, block-CRC table (against the CRC its record
/// holds) and block. It computes each key's newest record the way recovery does, so it can say which blobs a damaged
/// record or spill file costs. It modifies nothing; ``repair(logger:)`` (in `Verifier+Repair.swift`) does.
///
/// The directory must not be in use: the verifier takes `<dir>/LOCK` with `flock(LOCK_EX | LOCK_NB)` the way the
/// engine does, and refuses to run while a node holds it. All methods block.
public struct Verifier: Sendable {
    /// The data directory.
    public let directory: String
    let io: any FileIO

    public init(directory: String, io: any FileIO = PosixFileIO()) {
        self.directory = directory
        self.io = io
    }

    var segmentsPath: String { directory + "/" + Format.segmentsDirectory }
    var blobsPath: String { directory + "/" + Format.blobsDirectory }
    /// Where ``repair(logger:)`` copies damaged bytes, with a `MANIFEST` of what it copied.
    public static let quarantineDirectory = "quarantine"
    var quarantinePath: String { directory + "/" + Self.quarantineDirectory }

    /// Checks the whole directory, holding its lock meanwhile. Blocking; reads only.
    ///
    /// Errors: ``StoreError/unavailable`` when a running node holds the directory; `IOError` when the directory or a
    /// segment cannot be read (an I/O error is never taken for damage: the check stops instead).
    public func verify() throws -> VerifyReport {
        let lock = try DirectoryLock(directory: directory)
        defer { lock.release() }
        return try scan()
    }
}

/// What ``Verifier/verify()`` found. ``status`` sums it up; ``exitCode`` is what `coffer verify` exits with.
public struct VerifyReport: Sendable, Hashable, Codable {
    /// How bad it is.
    public enum Status: String, Sendable, Hashable, Codable {
        /// Every record and every live spill file is intact, and nothing is left over.
        case clean
        /// Only what a crash or kill leaves behind and the node's next start removes: a torn tail at the end of the
        /// last segment, spill files no live record references. No damage known.
        case crashLeftovers = "crash_leftovers"
        /// Bytes that fail their checksums, or a missing spill file: blobs may be lost (see ``damagedBlobs``).
        case damaged
    }

    public var directory: String
    public var segmentsScanned = 0
    /// Records that passed every check.
    public var recordsVerified = 0
    /// Keys whose newest record is a put (what a node would serve after starting on this directory).
    public var liveBlobs = 0
    public var spillFilesVerified = 0
    public var spillBlocksVerified = 0
    public var bytesRead: Int64 = 0
    /// Keys whose newest version is lost or unreadable, one entry per key.
    public var damagedBlobs: [DamagedBlob] = []
    /// Every byte range of a segment that is not a valid record (or a bad segment header), in log order.
    public var regions: [DamagedRegion] = []
    /// Names in `blobs/` that no live record references (`.partial` files included); the next start removes them.
    public var orphanSpillFiles: [String] = []

    public init(directory: String) {
        self.directory = directory
    }

    public var status: Status {
        let damage = !damagedBlobs.isEmpty || regions.contains { !$0.quarantined && $0.kind != .tornTail }
        if damage { return .damaged }
        if regions.contains(where: { !$0.quarantined }) || !orphanSpillFiles.isEmpty { return .crashLeftovers }
        return .clean
    }

    /// 0 clean, 1 damaged, 2 crash leftovers only.
    public var exitCode: Int32 {
        switch status {
        case .clean: return 0
        case .damaged: return 1
        case .crashLeftovers: return 2
        }
    }
}

/// A key whose newest version cannot be served as written.
public struct DamagedBlob: Sendable, Hashable, Codable {
    public enum Problem: String, Sendable, Hashable, Codable {
        /// The key's newest record fails its checks. Recovery skips it, so a node would serve the key's previous
        /// version (or answer not found): a stale read.
        case recordDamaged = "record_damaged"
        /// The key's newest record is intact but sits in a segment whose header is damaged, which recovery skips (or,
        /// for the last segment, removes): the same stale read.
        case segmentHeaderDamaged = "segment_header_damaged"
        /// The spill file of the key's newest version fails a check (header, block table or a block): reads fail.
        case spillFileDamaged = "spill_file_damaged"
        /// The spill file of the key's newest version is missing: reads fail.
        case spillFileMissing = "spill_file_missing"
    }

    public var key: String
    public var problem: Problem
    /// What exactly failed, for a human.
    public var detail: String
    /// Where the key's newest record starts.
    public var segment: UInt32
    public var offset: Int64
    /// Its sequence number as stored (unverified when the record header is damaged).
    public var sequence: UInt64?
    /// The spill file, for the spill problems (and for a damaged put-spill record, when its metadata can be read).
    public var spillID: UInt64?
}

/// A byte range of a segment that recovery does not index.
public struct DamagedRegion: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable {
        /// Bad bytes with valid records after them: skipped and left on disk by recovery.
        case corrupt
        /// Bad bytes running to the end of a sealed segment: left on disk by recovery.
        case corruptTail = "corrupt_tail"
        /// Bad bytes running to the end of the last segment (or a last segment with nothing valid in it): what a
        /// crash during a write leaves; the next start cuts it, keeping a copy under `recovery/`.
        case tornTail = "torn_tail"
        /// A segment header that fails its checks: recovery skips the whole segment (removes it if it is the last).
        case segmentHeader = "segment_header"
    }

    public var kind: Kind
    public var segment: UInt32
    public var offset: Int64
    public var length: Int64
    /// The records the region held, as far as their bytes can still be read.
    public var records: [DamagedRecord]
    /// `true` when `quarantine/MANIFEST` lists exactly these bytes: damage already handled by a repair.
    public var quarantined = false
}

/// One record inside a damaged region, read on a best-effort basis.
public struct DamagedRecord: Sendable, Hashable, Codable {
    public var offset: Int64
    /// `true` when the record header passed its own CRC (so its key, sequence and length are trustworthy); the
    /// record's body then failed its CRC, or the record runs past the end of the file.
    public var headerIntact: Bool
    public var length: Int64?
    /// The key, when its bytes could be read as UTF-8 (from an intact or a damaged header).
    public var key: String?
    public var sequence: UInt64?
    /// `put-inline`, `put-spill` or `delete`.
    public var kind: String?
    /// The spill file a put-spill record names, when its metadata could be read.
    public var spillID: UInt64?
    /// `true` when every byte of the record is inside the region and valid: a record of a segment with a damaged
    /// header (recovery skips it although it is intact).
    public var intact = false
}

/// `flock(LOCK_EX | LOCK_NB)` on `<dir>/LOCK`, as the engine takes it (retried for up to a second). The lock file is
/// not created when missing.
struct DirectoryLock {
    private let fd: CInt

    /// Errors: `IOError` when the directory does not exist; ``StoreError/unavailable`` when another process (a node)
    /// holds the lock.
    init(directory: String) throws {
        var info = stat()
        guard stat(directory, &info) == 0 else {
            throw IOError(errnoCode: errno, reason: "data directory \(directory)")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw IOError(errnoCode: ENOTDIR, reason: "data directory \(directory)")
        }
        let fd = Glibc.open(directory + "/" + Format.lockFileName, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            guard errno == ENOENT else { throw IOError(errnoCode: errno, reason: "open lock file") }
            self.fd = -1
            return
        }
        // Like the engine: a holder that is going away (a node just killed) lets go within moments.
        for attempt in 0..<20 {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                self.fd = fd
                return
            }
            guard errno == EWOULDBLOCK || errno == EINTR, attempt < 19 else { break }
            usleep(50_000)
        }
        Glibc.close(fd)
        throw StoreError.unavailable.with(
            message: "data directory \(directory) is in use by another process (a running node?)")
    }

    func release() {
        if fd >= 0 { Glibc.close(fd) }
    }
}
