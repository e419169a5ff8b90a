import CofferCore
import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The node's storage engine: an append-only log of checksummed records with group commit, large bodies in spill
/// files, and an in-memory index rebuilt at start. Implements ``BlobStore``; knows nothing of HTTP.
///
/// Threads: one dedicated writer thread runs the group commit; a small pool runs every other blocking call (reads,
/// spill writes). Nothing here blocks an event loop or the cooperative pool.
public final class LogEngine: BlobStore, Sendable {
    struct State: Sendable {
        var index: [BlobKey: IndexEntry] = [:]
        var segments: [UInt32: SegmentFile] = [:]
        var contentTypes = StringInterner()
        /// The segment the writer appends to; never compacted.
        var activeSegment: UInt32 = 0
        var open = true
        /// Set when the log could not be restored to a known state after a failed write; writes are refused.
        var writeFailure: StoreError?
    }

    /// Touched only by the writer thread (and by `open` before the thread starts).
    final class WriterState: @unchecked Sendable {
        var active: SegmentFile
        var end: Int64
        var nextSequence: UInt64

        init(active: SegmentFile, end: Int64, nextSequence: UInt64) {
            self.active = active
            self.end = end
            self.nextSequence = nextSequence
        }
    }

    let configuration: EngineConfiguration
    let io: any FileIO
    let logger: Logger
    let segmentsPath: String
    let blobsPath: String
    let recoveryPath: String
    let state: Mutex<State>
    let writer: WriterState
    let queue = GroupCommitQueue()
    let ioPool: NIOThreadPool
    let writerPool: NIOThreadPool
    let nextSpillID: Atomic<UInt64>
    let reserve: SpaceReserve
    let cache: ReadCache
    private let lockFD: CInt
    private let writerTask: Mutex<Task<Void, Never>?> = Mutex(nil)
    private let compactorTask: Mutex<Task<Void, Never>?> = Mutex(nil)
    let compacting = Mutex(false)

    /// What recovery found and did when this engine opened.
    public let recovery: RecoveryReport

    init(
        configuration: EngineConfiguration, logger: Logger, lockFD: CInt, recovered: Recovered, ioPool: NIOThreadPool,
        writerPool: NIOThreadPool
    ) {
        self.configuration = configuration
        self.io = configuration.fileIO
        self.logger = logger
        self.segmentsPath = configuration.directory + "/" + Format.segmentsDirectory
        self.blobsPath = configuration.directory + "/" + Format.blobsDirectory
        self.recoveryPath = configuration.directory + "/" + Format.recoveryDirectory
        self.lockFD = lockFD
        self.state = Mutex(recovered.state)
        self.writer = recovered.writer
        self.recovery = recovered.report
        self.nextSpillID = Atomic(recovered.nextSpillID)
        self.ioPool = ioPool
        self.writerPool = writerPool
        self.reserve = recovered.reserve
        self.cache = ReadCache(
            budget: configuration.readCacheBytes, maxBlobBytes: configuration.readCacheMaxBlobBytes)
    }

    /// Opens (creating if needed) the data directory, recovers it and starts the writer.
    ///
    /// Durability: recovery cuts a torn tail of the last segment (keeping a copy under `recovery/`) and fsyncs the
    /// cut before anything new is written; orphan spill files are removed.
    /// Errors: ``ConfigurationError``; `IOError` when the directory cannot be used; ``StoreError/unavailable`` when
    /// another process holds it.
    public static func open(_ configuration: EngineConfiguration, logger: Logger) async throws -> LogEngine {
        try configuration.validate()
        let ioPool = NIOThreadPool(numberOfThreads: max(1, configuration.ioThreads))
        ioPool.start()
        let writerPool = NIOThreadPool(numberOfThreads: 1)
        writerPool.start()
        do {
            let (lockFD, recovered) = try await ioPool.runIfActive {
                let lockFD = try lockDirectory(configuration)
                do {
                    var recovered = try recover(configuration, logger: logger)
                    recovered.reserve = SpaceReserve(
                        path: configuration.directory + "/" + Format.reserveFileName, size: configuration.reserveBytes,
                        io: configuration.fileIO)
                    if !(try recovered.reserve.acquire()) {
                        logger.warning(
                            "disk full at start: no space reserve; new blobs are refused until space is freed",
                            metadata: ["reserve.bytes": "\(configuration.reserveBytes)"])
                    }
                    return (lockFD, recovered)
                } catch {
                    Glibc.close(lockFD)
                    throw error
                }
            }
            let engine = LogEngine(
                configuration: configuration, logger: logger, lockFD: lockFD, recovered: recovered, ioPool: ioPool,
                writerPool: writerPool)
            engine.startWriter()
            engine.startCompactor()
            return engine
        } catch {
            try? await ioPool.shutdownGracefully()
            try? await writerPool.shutdownGracefully()
            throw error
        }
    }

    private static func lockDirectory(_ configuration: EngineConfiguration) throws -> CInt {
        let io = configuration.fileIO
        try makeDirectories(configuration.directory, io: io)
        let fd = Glibc.open(configuration.directory + "/" + Format.lockFileName, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "open lock file") }
        // A holder that is going away (a process just killed, or a child forked a moment ago that still shares the
        // lock until it execs) lets go within moments: try for up to a second before calling the directory busy.
        // Runs on the I/O pool, so the short sleeps block no event loop or cooperative thread.
        for attempt in 0..<20 {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return fd }
            guard errno == EWOULDBLOCK || errno == EINTR, attempt < 19 else { break }
            usleep(50_000)
        }
        Glibc.close(fd)
        throw StoreError.unavailable.with(
            message: "data directory \(configuration.directory) is in use by another process")
    }

    /// Creates `path` and its parents (like `mkdir -p`).
    static func makeDirectories(_ path: String, io: any FileIO) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            try io.makeDirectory(prefix)
        }
    }

    private func startWriter() {
        let task = Task.detached { [self] in
            do {
                try await writerPool.runIfActive { self.runWriter() }
            } catch {
                logger.critical("group-commit writer could not start", metadata: ["error": "\(error)"])
            }
        }
        writerTask.withLock { $0 = task }
    }

    /// Runs ``compact(threshold:)`` every ``EngineConfiguration/compactionInterval`` until the engine closes.
    private func startCompactor() {
        guard let interval = configuration.compactionInterval else { return }
        let threshold = configuration.compactionThreshold
        let task = Task.detached { [self] in
            while !Task.isCancelled {
                do {
                    try await Task.sleep(for: interval)
                    _ = try await compact(threshold: threshold)
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("background compaction failed", metadata: ["error": "\(error)"])
                }
            }
        }
        compactorTask.withLock { $0 = task }
    }

    /// Stops taking writes, commits everything already queued, and releases the directory.
    ///
    /// Durability: every write acknowledged before or during `close` is durable when it returns.
    public func close() async throws {
        let wasOpen = state.withLock { s in
            defer { s.open = false }
            return s.open
        }
        guard wasOpen else { return }
        if let compactor = compactorTask.withLock({ $0 }) {
            compactor.cancel()
            await compactor.value
        }
        queue.close()
        await writerTask.withLock { $0 }?.value
        try await ioPool.shutdownGracefully()
        try await writerPool.shutdownGracefully()
        // No read or write can run any more (both pools are stopped): close every segment now, so the file system
        // can be unmounted, rather than whenever the last reference goes.
        let segments = state.withLock { s in
            defer {
                s.segments.removeAll()
                s.index.removeAll()
            }
            return Array(s.segments.values)
        }
        for segment in segments { segment.close() }
        cache.removeAll()
        writer.active.close()
        Glibc.close(lockFD)
        logger.info("engine closed")
    }

    /// Number of live blobs.
    public var count: Int { state.withLock { $0.index.count } }

    /// Maps an error from the file system or the thread pool to a ``StoreError``.
    static func storeError(_ error: any Error) -> StoreError {
        switch error {
        case let error as StoreError:
            return error
        case let error as IOError where error.errnoCode == ENOSPC || error.errnoCode == EDQUOT:
            return .insufficientStorage
        case let error as IOError:
            return .io.with(message: "storage I/O error: \(error.description)")
        case is NIOThreadPoolError.ThreadPoolInactive:
            return .unavailable
        case is CancellationError:
            return .incompleteBody
        default:
            return .io.with(message: "storage error: \(error)")
        }
    }

    /// What a new version gets while the disk is full.
    static let diskFull = StoreError.insufficientStorage.with(
        message: "the disk is full; delete blobs (and let compaction run) to make room")

    static func nowMillis() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
