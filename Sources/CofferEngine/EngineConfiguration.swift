import CofferCore

/// How a ``LogEngine`` is set up. The defaults are the node's defaults.
public struct EngineConfiguration: Sendable {
    /// The data directory; created if missing.
    public var directory: String
    /// Largest blob accepted, in bytes.
    public var maxBlobSize: Int64 = 5 << 30
    /// Bodies up to this many bytes are stored inside the log record; larger ones stream to a spill file.
    public var inlineThreshold: Int = 1 << 20
    /// A segment is sealed and a new one started once it would grow past this many bytes.
    public var segmentSize: Int64 = 64 << 20
    /// Most record bytes one group commit writes before it fsyncs.
    public var maxBatchBytes: Int = 16 << 20
    /// Threads for blocking reads and spill-file writes (the group-commit writer has its own thread).
    public var ioThreads: Int = 4
    /// Bytes per chunk when streaming a spill file (a multiple of ``Format/spillBlockSize``).
    public var readChunkSize: Int = 4 * Format.spillBlockSize
    /// Bytes per slice when a spilled blob is sent straight from its file (verified, then sendfile); 0 streams every
    /// read through memory instead.
    public var fileSliceSize: Int = 16 * Format.spillBlockSize
    /// Spill writes are gathered up to this many bytes before one pwrite.
    public var spillWriteChunkSize: Int = 1 << 20
    /// How often the background compactor looks for segments to compact; `nil` turns it off.
    public var compactionInterval: Duration? = .seconds(30)
    /// A sealed segment is compacted once at least this share of its bytes is garbage.
    public var compactionThreshold: Double = 0.5
    /// Bytes kept allocated in `<dir>/reserve` and given up when the disk fills, so deletes and compaction can still
    /// write; 0 turns the reserve off.
    public var reserveBytes: Int64 = 8 << 20
    /// Bytes of small blobs kept in memory so reads of them need no I/O (and the HTTP layer can answer them on its
    /// event loop); 0 turns the cache off.
    public var readCacheBytes: Int = 64 << 20
    /// Largest blob the read cache keeps.
    public var readCacheMaxBlobBytes: Int = 128 * 1024
    /// The file-system seam; tests pass one that injects faults (`FaultInjectingFileIO`, a testing target).
    public var fileIO: any FileIO = PosixFileIO()

    public init(directory: String) {
        self.directory = directory
    }

    /// Refuses settings the format cannot honour: an inline record must stay under ``Format/maxRecordLength``, and
    /// chunk sizes must be usable.
    public func validate() throws {
        let largestInlineRecord =
            inlineThreshold + Format.recordHeaderSize + Format.recordTrailerSize + BlobKey.maxUTF8Length
            + Format.putMetaFixedSize + Format.maxContentTypeLength
        guard inlineThreshold >= 0, largestInlineRecord <= Format.maxRecordLength else {
            throw ConfigurationError("inlineThreshold must be between 0 and \(Format.maxRecordLength / 2) bytes")
        }
        guard reserveBytes >= 0 else { throw ConfigurationError("reserveBytes must not be negative") }
        guard maxBlobSize >= 0 else { throw ConfigurationError("maxBlobSize must not be negative") }
        guard segmentSize >= Int64(Format.segmentHeaderSize) else {
            throw ConfigurationError("segmentSize must be at least \(Format.segmentHeaderSize) bytes")
        }
        guard readChunkSize > 0, spillWriteChunkSize > 0, maxBatchBytes > 0, fileSliceSize >= 0 else {
            throw ConfigurationError("chunk and batch sizes must be positive")
        }
        guard (0...1).contains(compactionThreshold) else {
            throw ConfigurationError("compactionThreshold must be between 0 and 1")
        }
    }
}

/// A setting in ``EngineConfiguration`` that the engine cannot work with.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) { self.description = description }
}

/// What recovery did when the engine opened; also logged.
public struct RecoveryReport: Sendable, Hashable {
    public var segmentsScanned = 0
    public var recordsScanned = 0
    public var liveBlobs = 0
    /// Bytes cut from the tail of the last segment (a copy is kept under `recovery/`).
    public var bytesCut: Int64 = 0
    /// Records skipped because they failed their checks in a sealed segment (kept on disk, not indexed).
    public var corruptRegions = 0
    /// Spill files removed because no live record referenced them (or they were never committed).
    public var orphansRemoved = 0
    /// Live records whose spill file is missing.
    public var missingSpills = 0
    /// Wall time of the whole recovery, in milliseconds.
    public var milliseconds: Int64 = 0

    public init() {}
}
