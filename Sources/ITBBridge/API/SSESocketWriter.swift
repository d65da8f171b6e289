import NIOCore

/// The first handler of an event stream's pipeline, next to the socket: it lets live events go
/// straight to the socket, framed once for every client, instead of through the HTTP encoder for
/// each client.
///
/// It watches the response head go out, to learn how the body is framed: chunked (HTTP/1.1) or
/// delimited by the connection's close (HTTP/1.0). ``SSEChannelSink`` then writes each event's
/// ready-made ``PublishedEvent/chunk`` or its bare ``PublishedEvent/sse`` bytes here, with no
/// allocation. Everything else passes through untouched, in order (all on the channel's loop).
final class SSESocketWriter: ChannelOutboundHandler, RemovableChannelHandler, @unchecked Sendable {
    // @unchecked: used only on the channel's event loop; NIO calls the handler methods there, and
    // write(_:) checks it.
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    /// How the response body is framed, once its head has gone out; nil before.
    enum Framing { case chunked, closeDelimited }
    private(set) var framing: Framing?
    private var head: ByteBuffer?
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if framing == nil, case .byteBuffer(let bytes) = unwrapOutboundIn(data) {
            // The response head, possibly in pieces: read until its blank line.
            var collected = head ?? ByteBuffer()
            var copy = bytes
            collected.writeBuffer(&copy)
            let text = String(buffer: collected).lowercased()
            if let end = text.range(of: "\r\n\r\n") {
                let fields = text[..<end.lowerBound]
                framing = fields.contains("\r\ntransfer-encoding: chunked") ? .chunked : .closeDelimited
                head = nil
            } else {
                head = collected
            }
        }
        context.write(data, promise: promise)
    }

    /// Writes `event` to the socket, framed as the body is; false when the framing is not known
    /// yet or the handler has left the pipeline (the caller then uses the pipeline's tail).
    func write(_ event: PublishedEvent) -> Bool {
        guard let context, let framing else { return false }
        context.eventLoop.preconditionInEventLoop()
        let bytes = framing == .chunked ? event.chunk : event.sse
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(bytes)), promise: nil)
        return true
    }
}
