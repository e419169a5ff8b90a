import CofferCore
import NIOCore
import NIOHTTP1

/// The request task's handle on its connection: every call hops to the event loop and acts on the handler there.
struct Responder: Sendable {
    let loop: any EventLoop
    let handler: NIOLoopBound<BlobHTTPHandler>

    func onLoop(_ body: @escaping @Sendable (BlobHTTPHandler) -> Void) {
        if loop.inEventLoop {
            body(handler.value)
        } else {
            loop.execute { body(handler.value) }
        }
    }

    /// A complete response in one hop.
    func send(_ status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer? = nil) {
        onLoop { $0.sendResponse(status: status, headers: headers, body: body) }
    }

    func send(_ error: HTTPError, forHead: Bool = false) {
        onLoop { $0.sendError(error, forHead: forHead) }
    }

    /// Streams `body` after `head`, keeping at most two chunks in flight, so memory stays constant however large the
    /// blob and however slow the client. Ends the response normally, or aborts the connection if `body` throws.
    func stream(
        _ status: HTTPResponseStatus, headers: HTTPHeaders, body: some AsyncSequence<ByteBuffer, any Error>
    )
        async throws
    {
        try await loop.flatSubmit { handler.value.sendHead(status: status, headers: headers) }.get()
        var inFlight: EventLoopFuture<Void>?
        do {
            for try await chunk in body {
                let write = loop.flatSubmit { handler.value.writeChunk(chunk) }
                if let inFlight { try await inFlight.get() }
                inFlight = write
            }
            if let inFlight { try await inFlight.get() }
        } catch {
            onLoop { $0.abortStream() }
            throw error
        }
        onLoop { $0.endStream() }
    }

    /// Sends the verified slices of `file` straight from the file (sendfile), at most two in flight: each slice is
    /// verified before it is written, so a slice that fails its checksum aborts the connection and the client sees a
    /// short body, never wrong bytes. The descriptor is this response's own and is closed at the end.
    func sendFile(_ status: HTTPResponseStatus, headers: HTTPHeaders, file: FileSlices) async throws {
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: try file.duplicateDescriptor())
        var inFlight: EventLoopFuture<Void>?
        do {
            try await loop.flatSubmit { handler.value.sendHead(status: status, headers: headers) }.get()
            var position = file.range.lowerBound
            let size = Int64(max(file.sliceSize, 1))
            while position < file.range.upperBound {
                let end = min(file.range.upperBound, (position / size + 1) * size)
                try await file.verify(position..<end)
                let region = FileRegion(fileHandle: handle, readerIndex: Int(position), endIndex: Int(end))
                let write = loop.flatSubmit { handler.value.writeFileRegion(region) }
                if let inFlight { try await inFlight.get() }
                inFlight = write
                position = end
            }
            if let inFlight { try await inFlight.get() }
        } catch {
            // Closing the connection fails any write still queued before the descriptor is closed (same loop turn).
            onLoop {
                $0.abortStream()
                try? handle.close()
            }
            throw error
        }
        onLoop {
            $0.endStream()
            try? handle.close()
        }
    }
}
