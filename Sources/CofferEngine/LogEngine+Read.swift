import CofferCore
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension LogEngine {
    /// Reads (part of) the blob at `key`. Conditions and the range are decided from the index alone; bytes are read
    /// only for a 200 or 206 with a body, and always verified: inline records by their CRC, spill files block by block.
    ///
    /// - Errors: ``StoreError/notFound``; ``StoreError/corrupt`` when stored bytes fail a checksum (logged, never
    ///   returned); ``StoreError/io``.
    public func read(_ key: BlobKey, options: ReadOptions) async throws -> BlobRead {
        // A spill file can vanish between the index lookup and the open when a newer version replaces it; the
        // retry then sees the newer version.
        for _ in 0..<3 {
            let (entry, segment) = try state.withLock { s -> (IndexEntry, SegmentFile?) in
                guard s.open else { throw StoreError.unavailable.with(message: "the engine is closed") }
                guard let entry = s.index[key] else { throw StoreError.notFound }
                return (entry, s.segments[entry.segment])
            }
            let info = entry.info
            let decision = options.evaluate(against: info)
            guard let range = options.bodyRange(for: decision, size: info.size) else {
                return BlobRead(info: info, decision: decision, body: nil)
            }
            do {
                if entry.isSpilled {
                    return BlobRead(info: info, decision: decision, body: .stream(try await openSpill(entry, range)))
                }
                guard let segment else { throw StoreError.corrupt.with(message: "segment of the record is missing") }
                let bytes = try await ioPool.runIfActive {
                    try self.readInline(key: key, entry: entry, segment: segment, range: range)
                }
                return BlobRead(info: info, decision: decision, body: .buffer(bytes))
            } catch let error as IOError where error.errnoCode == ENOENT && entry.isSpilled {
                if lookup(key)?.sequence != entry.sequence { continue }
                reportCorruption(key: key.rawValue, entry: entry, reason: "spill file is missing")
                throw StoreError.corrupt.with(message: "the blob's data file is missing")
            } catch let error as StoreError where error == .corrupt {
                reportCorruption(key: key.rawValue, entry: entry, reason: error.message)
                throw error
            } catch {
                throw LogEngine.storeError(error)
            }
        }
        throw StoreError.io.with(message: "the blob kept changing while being read; retry")
    }

    /// Answers from the index alone (HEAD, 304, 412, 416, not found) or from the read cache; `nil` when the bytes must
    /// be read from disk. Never blocks on I/O: safe on an event loop.
    public func readNow(_ key: BlobKey, options: ReadOptions) -> Result<BlobRead, StoreError>? {
        guard let found = state.withLock({ s -> IndexEntry?? in s.open ? .some(s.index[key]) : nil }) else {
            return nil  // closed: the regular path says so
        }
        guard let entry = found else { return .failure(.notFound) }
        let info = entry.info
        let decision = options.evaluate(against: info)
        guard let range = options.bodyRange(for: decision, size: info.size) else {
            return .success(BlobRead(info: info, decision: decision, body: nil))
        }
        guard !entry.isSpilled, let data = cache.lookup(key, sequence: entry.sequence) else { return nil }
        let bytes = data.getSlice(at: data.readerIndex + Int(range.lowerBound), length: range.count)!
        return .success(BlobRead(info: info, decision: decision, body: .buffer(bytes)))
    }

    /// Reads and verifies the whole record, then slices `range` out of its data. Blocking.
    private func readInline(
        key: BlobKey, entry: IndexEntry, segment: SegmentFile, range: Range<Int64>
    ) throws
        -> ByteBuffer
    {
        let raw = try io.read(segment.fd, count: Int(entry.recordLength), offset: entry.recordOffset)
        guard raw.readableBytes == Int(entry.recordLength),
            case .success(let record) = LogRecord.decode(raw, at: raw.readerIndex),
            record.sequence == entry.sequence, BlobKey(unchecked: record.key) == key, let data = record.data
        else { throw StoreError.corrupt.with(message: "record failed its checksum") }
        cache.insert(key, sequence: entry.sequence, data: data)
        return data.getSlice(at: data.readerIndex + Int(range.lowerBound), length: range.count)!
    }

    /// Opens the spill file (checking header and block table before anything is sent) and returns a stream that
    /// reads and verifies one chunk per pull.
    private func openSpill(_ entry: IndexEntry, _ range: Range<Int64>) async throws -> ByteStream {
        let directory = blobsPath
        let io = self.io
        let reader = try await ioPool.runIfActive {
            try SpillReader.open(
                directory: directory, id: entry.spillID, length: entry.size, blockSize: entry.spillBlockSize,
                tableCRC: entry.spillTableCRC, io: io)
        }
        let pool = ioPool
        let chunk = configuration.readChunkSize
        let engine = self
        // On the real file system the HTTP layer may send the verified bytes straight from the file (sendfile): each
        // slice is read and checked against its block CRCs first, exactly as the stream below does; the copy read
        // for the check is dropped and the kernel sends from the page cache (one copy fewer, no socket buffer copy).
        let base = Int64(Format.spillHeaderSize)
        let file: FileSlices? =
            io is PosixFileIO && configuration.fileSliceSize > 0
            ? FileSlices(
                range: (base + range.lowerBound)..<(base + range.upperBound),
                sliceSize: configuration.fileSliceSize,
                duplicateDescriptor: { try reader.duplicateDescriptor() },
                verify: { slice in
                    do {
                        try await pool.runIfActive {
                            var position = slice.lowerBound - base
                            let end = slice.upperBound - base
                            while position < end {
                                position += Int64(try reader.read(position..<end, maxBytes: chunk).readableBytes)
                            }
                        }
                    } catch let error as StoreError where error == .corrupt {
                        engine.reportCorruption(spillID: entry.spillID, reason: error.message)
                        throw error
                    } catch {
                        throw LogEngine.storeError(error)
                    }
                }) : nil
        return ByteStream(file: file) {
            let cursor = Cursor(range.lowerBound)
            return {
                let position = cursor.position
                guard position < range.upperBound else { return nil }
                do {
                    let bytes = try await pool.runIfActive {
                        try reader.read(position..<range.upperBound, maxBytes: chunk)
                    }
                    cursor.position += Int64(bytes.readableBytes)
                    return bytes
                } catch let error as StoreError where error == .corrupt {
                    engine.reportCorruption(spillID: entry.spillID, reason: error.message)
                    throw error
                } catch {
                    throw LogEngine.storeError(error)
                }
            }
        }
    }

    func reportCorruption(key: String, entry: IndexEntry, reason: String) {
        logger.error(
            "corrupt blob detected on read; not returned",
            metadata: [
                "blob.key": "\(key)", "segment.id": "\(entry.segment)", "record.offset": "\(entry.recordOffset)",
                "spill.id": "\(entry.spillID)", "reason": "\(reason)",
            ])
    }

    func reportCorruption(spillID: UInt64, reason: String) {
        logger.error(
            "corrupt spill data detected while streaming; transfer aborted",
            metadata: ["spill.id": "\(spillID)", "reason": "\(reason)"])
    }
}

/// The read position of one spill stream; used by one consumer at a time.
private final class Cursor: @unchecked Sendable {
    var position: Int64
    init(_ position: Int64) { self.position = position }
}
