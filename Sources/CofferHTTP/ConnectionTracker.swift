import NIOCore
import Synchronization

/// Tracks open connections so a graceful shutdown can ask each to finish its current request and close
/// (`ChannelShouldQuiesceEvent`, which the HTTP pipeline handler acts on), and know when all are gone.
final class ConnectionTracker: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var quiescing = false
        var drained: EventLoopPromise<Void>?
    }

    private let state = Mutex(State())

    /// Registers a new connection; a connection accepted during shutdown is closed at once.
    func add(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let accepted = state.withLock { s -> Bool in
            guard !s.quiescing else { return false }
            s.channels[id] = channel
            return true
        }
        guard accepted else {
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { _ in
            let drained = self.state.withLock { s -> EventLoopPromise<Void>? in
                s.channels.removeValue(forKey: id)
                return s.quiescing && s.channels.isEmpty ? s.drained : nil
            }
            drained?.succeed(())
        }
    }

    /// How many connections are open.
    var count: Int { state.withLock { $0.channels.count } }

    /// Asks every connection to close after its in-flight request; `promise` succeeds once all are closed.
    func quiesce(_ promise: EventLoopPromise<Void>) {
        let channels = state.withLock { s -> [any Channel] in
            s.quiescing = true
            s.drained = promise
            return Array(s.channels.values)
        }
        if channels.isEmpty { promise.succeed(()) }
        for channel in channels {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }

    /// Closes every connection still open.
    func closeAll() {
        let channels = state.withLock { Array($0.channels.values) }
        for channel in channels { channel.close(promise: nil) }
    }
}
