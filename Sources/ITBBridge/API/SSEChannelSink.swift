import NIOCore
import NIOHTTPTypes

/// A live event stream written straight into its HTTP connection, on the connection's event loop.
///
/// Once a `GET /v1/events` client has caught up, ``EventStream`` attaches it to the hub through
/// this sink: each published event then reaches it inside one task per event loop (see
/// ``EventHub``), as a chunk of the streamed response body written into the channel's pipeline,
/// with no Swift task wake-up or thread hop of its own. The response's head and its end still go
/// through Hummingbird's response writer; this sink only adds body chunks in between, and ends
/// when the client goes, when it falls too far behind, or when the hub closes.
///
/// A client that stops reading fills the socket, then NIO's buffer beyond its high-water mark
/// (`isWritable` turns false); after `capacity` more events it is *lagged*: it gets a last
/// `lagged` event and is closed as soon as that is written out (or `grace` later). Memory held for it is
/// bounded by those `capacity` events, whose bytes are shared with every other subscriber.
///
/// State is confined to the event loop: every call is made there, and each entry point checks it
/// (`preconditionInEventLoop`), hence `@unchecked Sendable`.
final class SSEChannelSink: EventSink, @unchecked Sendable {
    let eventLoop: any EventLoop
    private let channel: any Channel
    private let socketWriter: SSESocketWriter?
    private let capacity: Int
    private let grace: TimeAmount
    /// The newest event id sent to this client.
    private var lastSent: Int64
    /// Events written while the channel was not writable, in a row.
    private var blocked = 0
    private var lastWrite = NIODeadline.now()
    private var ended = false
    private let done: EventLoopPromise<Void>
    private let onEnd: @Sendable () -> Void

    /// Creates the sink for `channel`, which has already been sent every event up to `lastSent`.
    /// `onEnd` runs once when the stream ends, whatever the reason.
    /// Events go through `socketWriter` when it is given and knows the body's framing.
    init(channel: any Channel, socketWriter: SSESocketWriter?, lastSent: Int64, capacity: Int, grace: TimeAmount,
         onEnd: @escaping @Sendable () -> Void) {
        self.channel = channel
        self.socketWriter = socketWriter
        self.eventLoop = channel.eventLoop
        self.capacity = capacity
        self.grace = grace
        self.lastSent = lastSent
        self.onEnd = onEnd
        self.done = channel.eventLoop.makePromise()
        channel.closeFuture.whenComplete { [self] _ in end() }
    }

    /// Completes when the stream has ended: the handler then finishes the response.
    var finished: EventLoopFuture<Void> { done.futureResult }

    func deliver(_ event: PublishedEvent) {
        eventLoop.preconditionInEventLoop()
        let journaled = event.id != PublishedEvent.unjournaled
        guard !ended, !journaled || event.id > lastSent else { return }
        if channel.isWritable {
            blocked = 0
        } else {
            blocked += 1
            if blocked > capacity {
                lag()
                return
            }
        }
        if socketWriter?.write(event) == true {
            lastWrite = .now()
        } else {
            write(event.sse)
        }
        if journaled { lastSent = event.id }
    }

    func keepAlive(ifIdleSince cutoff: NIODeadline) {
        eventLoop.preconditionInEventLoop()
        guard !ended, lastWrite <= cutoff else { return }
        write(ByteBuffer(string: ": keep-alive\n\n"))
    }

    func finish() {
        eventLoop.preconditionInEventLoop()
        end()
    }

    private func write(_ buffer: ByteBuffer) {
        channel.writeAndFlush(HTTPResponsePart.body(buffer), promise: nil)
        lastWrite = .now()
    }

    /// Sends `lagged` behind what is already buffered and closes the connection once the kernel
    /// has taken it (so a client that resumes reading learns why it was cut off), or after
    /// `grace` if it never reads again.
    private func lag() {
        let channel = self.channel
        let written = eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(HTTPResponsePart.body(EventStream.laggedEvent(capacity: capacity, lastSent: lastSent)), promise: written)
        let deadline = eventLoop.scheduleTask(in: grace) { channel.close(promise: nil) }
        written.futureResult.whenComplete { _ in
            deadline.cancel()
            channel.close(promise: nil)
        }
        end()
    }

    private func end() {
        guard !ended else { return }
        ended = true
        if let socketWriter { channel.pipeline.syncOperations.removeHandler(socketWriter, promise: nil) }
        onEnd()
        done.succeed(())
    }
}
