import NIOCore
import NIOHTTP1

/// Answers a request the HTTP parser rejects with a 400 and a JSON body (instead of NIO's empty one), then lets the
/// decoder close the connection. Mirrors NIO's `HTTPServerProtocolErrorHandler`.
final class ProtocolErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var responseInFlight = false

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if !responseInFlight {
            let json = JSON.object([("error", "bad_request"), ("message", "malformed HTTP request: \(parserError)")])
            let body = context.channel.allocator.buffer(string: json)
            let headers = HTTPHeaders([
                ("Connection", "close"), ("Content-Type", "application/json"),
                ("Content-Length", "\(body.readableBytes)"),
            ])
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .badRequest, headers: headers))),
                promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200: responseInFlight = true
        case .end: responseInFlight = false
        default: break
        }
        context.write(data, promise: promise)
    }
}
