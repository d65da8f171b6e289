import HTTPTypes
import Hummingbird
import NIOCore

/// `GET /v1/events`: Server-Sent Events. Each event's `id:` is its journal event id. A client
/// that reconnects with `Last-Event-ID` (header, or `last_event_id` query) first gets everything
/// it missed from the journal, then live events, with no gap and no repeat: it subscribes before
/// reading the journal and skips live events it already got from there. Once the replay is done
/// a resumed stream gets one `event: caught_up` (the end-of-replay marker, ``caughtUpEvent(lastEventID:)``).
/// Once caught up, the stream is attached to the hub and fed on its connection's event loop (``SSEChannelSink``).
enum EventStream {
    /// The event types a client may filter on.
    static let types: Set<String> = ["device", "status", "reservoir", "alarm", "program", "refill"]
    /// How long a lagged client has to read what is buffered for it, its `lagged` event last,
    /// before its connection is closed regardless.
    static let laggedGrace: TimeAmount = .seconds(30)

    /// The last event a lagging client gets before it is disconnected.
    static func laggedEvent(capacity: Int, lastSent: Int64) -> ByteBuffer {
        ByteBuffer(string: """
            event: lagged
            data: {"error":"lagged","message":"this client fell more than \(capacity) events behind and is disconnected; reconnect with Last-Event-ID to resume","last_event_id":\(lastSent)}


            """)
    }

    /// The end-of-replay marker: `event: caught_up` with the id of the last event replayed (the
    /// client's resume point; 0 when nothing was replayed and none was given).
    static func caughtUpEvent(lastEventID: Int64) -> ByteBuffer {
        ByteBuffer(string: "event: caught_up\ndata: {\"last_event_id\":\(lastEventID)}\n\n")
    }

    static func response(request: Request, context: BridgeRequestContext, core: BridgeQueries) async throws -> Response {
        let query = request.uri.queryParameters
        let device = query.get("device")
        let pump = query.get("pump")
        // The same rule for an unknown id as /v1/alarms and /v1/devices/{id}: 404, not silence.
        if let device { try await BridgeRoutes.requireKnownDevice(core, device) }
        if let pump, try await !BridgeRoutes.journalCall({ try await core.pumpExists(id: pump) }) { throw APIError.unknownPump(pump) }
        var typeFilter: Set<String>?
        if let list = query.get("types") {
            let requested = Set(list.split(separator: ",").map { String($0) })
            guard !requested.isEmpty, requested.isSubset(of: types) else {
                throw APIError.badQuery("types", "a comma-separated list of \(types.sorted().joined(separator: ", "))")
            }
            typeFilter = requested
        }
        let lastEventText = request.headers[HTTPField.Name("Last-Event-ID")!] ?? query.get("last_event_id")
        var lastEventID: Int64?
        if let text = lastEventText, !text.isEmpty {
            guard let id = Int64(text), id >= 0 else {
                throw APIError(.badRequest, "bad_last_event_id", "Last-Event-ID must be an event id (a whole number ≥ 0), not `\(text)`")
            }
            lastEventID = id
        }
        let filter = EventFilter(device: device, pump: pump, types: typeFilter)
        let types = typeFilter
        let resumeAfter = lastEventID
        let channel = context.channel
        let subscription = core.subscribe(filter) {
            // Lagged: give the handler a moment to send `lagged`, then close the connection even
            // if the client has stopped reading (its pending write then fails and ends the handler).
            channel.eventLoop.scheduleTask(in: laggedGrace) { channel.close(promise: nil) }
        }
        let queries = core
        // Next to the socket before the response head goes out, so that it sees the head.
        let writer = SSESocketWriter()
        let socketWriter = (try? await channel.pipeline.addHandler(writer, position: .first).get()).map { writer }
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-store", HTTPField.Name("X-Accel-Buffering")!: "no"],
            body: ResponseBody { writer in
                do {
                    try await writer.write(ByteBuffer(string: "retry: 2000\n: itb-bridge event stream\n\n"))
                    var lastSent = resumeAfter ?? 0
                    if let start = resumeAfter {
                        var cursor = start
                        while true {
                            let page = try await queries.events(after: cursor, device: device, pump: pump, types: types, limit: 1000)
                            for event in page {
                                try await writer.write(PublishedEvent(event).sse)
                                cursor = event.id
                            }
                            if page.count < 1000 { break }
                        }
                        lastSent = cursor
                        // The end of the replay, sent once on a resumed stream (also when there
                        // was nothing to replay): what follows is live. No `id:` line, so the
                        // client's Last-Event-ID stays that of the last real event.
                        try await writer.write(caughtUpEvent(lastEventID: lastSent))
                    }
                    // Caught up: from now on the hub writes each event straight into this
                    // connection on its event loop (SSEChannelSink), after what is still queued.
                    let sink = SSEChannelSink(channel: channel, socketWriter: socketWriter, lastSent: lastSent, capacity: core.subscriberCapacity, grace: laggedGrace,
                                              onEnd: { subscription.cancel() })
                    let hub = core
                    let attached = try await channel.eventLoop.submit { () -> Bool in
                        guard let queued = hub.attach(subscription, to: sink) else { return false }
                        for event in queued { sink.deliver(event) }
                        return true
                    }.get()
                    if attached {
                        try await sink.finished.get()
                    } else if case .lagged? = subscription.next() {
                        // Fell behind while catching up from the journal.
                        try await writer.write(laggedEvent(capacity: core.subscriberCapacity, lastSent: lastSent))
                    }
                    subscription.cancel()
                    try await writer.finish(nil)
                } catch {
                    subscription.cancel()
                    throw error
                }
            })
    }
}
