import NIOCore
import NIOHTTP1

/// The connection's idle timeout and the answer to requests the parser rejects. Both live in the handler rather than in
/// NIO's `IdleStateHandler` and a separate error handler: those sit on the outbound path, and `IdleStateHandler` with an
/// all-idle timeout allocates a promise for every response part written.
extension BlobHTTPHandler {
    // MARK: Idle timeout

    func startIdleCheck(context: ChannelHandlerContext) {
        guard idleCheck == nil else { return }
        lastActivity = .now()
        scheduleIdleCheck(context: context, at: lastActivity + processor.configuration.idleTimeout)
    }

    func stopIdleCheck() {
        idleCheck?.cancel()
        idleCheck = nil
    }

    private func scheduleIdleCheck(context: ChannelHandlerContext, at deadline: NIODeadline) {
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        idleCheck = context.eventLoop.scheduleTask(deadline: deadline) { handler.value.checkIdle() }
    }

    /// Whether the connection waits on the server rather than the client: the store has the whole request (or paused
    /// its body, or has not asked for an `Expect: 100-continue` body yet) and no written part is waiting for the client
    /// to read it. A slow disk is no reason to drop a client.
    private var waitingOnServer: Bool {
        guard responseOpen, pendingWrites == 0 else { return false }
        guard requestOpen else { return true }
        return readsPaused || (expectsContinue && !continueSent)
    }

    /// Closes the connection if nothing was read and no write was issued or completed for the idle timeout while the
    /// client was the one being waited for, else looks again when it would be due. A client that stops reading a
    /// streamed body stops completing writes, so it is closed too.
    private func checkIdle() {
        guard let context, idleCheck != nil else { return }
        let now = NIODeadline.now()
        if waitingOnServer { lastActivity = now }
        let due = lastActivity + processor.configuration.idleTimeout
        if due <= now {
            processor.logger.debug("closing idle connection")
            idleCheck = nil
            context.close(promise: nil)
        } else {
            scheduleIdleCheck(context: context, at: due)
        }
    }

    /// Counts `write` as pending until it completes, and its completion as activity (streamed responses: one per
    /// chunk, not per small response).
    func noteCompletion(_ write: EventLoopFuture<Void>) -> EventLoopFuture<Void> {
        guard let context else { return write }
        pendingWrites += 1
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        write.whenComplete { _ in
            handler.value.pendingWrites -= 1
            handler.value.lastActivity = .now()
        }
        return write
    }

    // MARK: Lingering close

    /// How long a lingering connection may go without data before it is closed, and how long it may linger at most.
    static var lingerTimeout: TimeAmount { .seconds(2) }
    static var lingerLimit: TimeAmount { .seconds(30) }

    /// After an answer that ends the connection while the request's body is still arriving (413 before the body, a
    /// 409 or 412 for a write that will not happen, a 400): shut the write side (the client reads the answer, then
    /// an end of stream), and read and drop whatever the client still sends, so that its bytes do not meet a closed
    /// socket, whose reset would destroy the answer in the client's receive buffer before it reads it.
    func startLingering() {
        guard let context, context.channel.isActive, !lingering else { return }
        lingering = true
        source?.finish()
        source = nil
        collecting = nil
        stopIdleCheck()
        context.close(mode: .output, promise: nil)
        readsPaused = false
        context.read()
        let started = NIODeadline.now()
        scheduleLingerCheck(context: context, started: started)
    }

    private func scheduleLingerCheck(context: ChannelHandlerContext, started: NIODeadline) {
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        lingerCheck = context.eventLoop.scheduleTask(in: .milliseconds(500)) {
            let handler = handler.value
            guard let context = handler.context else { return }
            let now = NIODeadline.now()
            if now - handler.lastActivity >= Self.lingerTimeout || now - started >= Self.lingerLimit {
                context.close(promise: nil)
            } else {
                handler.scheduleLingerCheck(context: context, started: started)
            }
        }
    }

    // MARK: Errors

    /// A request the parser rejects gets a 400 with a JSON body (NIO's own error handler sends an empty one) unless a
    /// response is already under way, or the connection is already gone (the parser reports an incomplete request
    /// when the connection closes, also one that NIO's pipeline handler closed as idle at shutdown, where nothing may
    /// be written any more); the connection closes either way, since the framing of what follows is unknown.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        processor.logger.debug("connection error", metadata: ["error": "\(error)"])
        if let parserError = error as? HTTPParserError, !responseHeadWritten, !lingering, context.channel.isActive {
            var answer = HTTPError.badRequest("malformed HTTP request: \(parserError)")
            answer.closeConnection = true
            responseOpen = true  // answered between requests too
            sendError(answer)
        }
        source?.finish(error)
        source = nil
        collecting = nil
        // The connection is closing, and a parser error was just answered: the request task's answer (e.g. to the
        // body it could not finish) must not become a second response.
        responseOpen = false
        responseHeadWritten = true
        context.close(promise: nil)
    }
}
