import HTTPTypes
import Hummingbird
import NIOCore

/// `GET /v1/events`: Server-Sent Events. Each event's `id:` is its journal event id. A client
/// that reconnects with `Last-Event-ID` (header, or `last_event_id` query) first gets everything
/// it missed from the journal, then live events, with no gap and no repeat: it subscribes before
/// reading the journal and skips live events it already got from there.
enum EventStream {
    /// The event types a client may filter on.
    static let types: Set<String> = ["device", "status", "reservoir", "alarm", "program", "refill"]
    /// How long a lagged client has to read its `lagged` event before its connection is closed.
    static let laggedGrace: TimeAmount = .seconds(2)
    /// At most this many queued events are sent in one write.
    static let maximumBatchEvents = 256

    static func response(request: Request, context: BridgeRequestContext, core: BridgeCore) async throws -> Response {
        let query = request.uri.queryParameters
        let device = query.get("device")
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
        let filter = EventFilter(device: device, types: typeFilter)
        let types = typeFilter
        let resumeAfter = lastEventID
        let channel = context.channel
        let subscription = core.hub.subscribe(filter) {
            // Lagged: give the handler a moment to send `lagged`, then close the connection even
            // if the client has stopped reading (its pending write then fails and ends the handler).
            channel.eventLoop.scheduleTask(in: laggedGrace) { channel.close(promise: nil) }
        }
        let journal = core.journal
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
                            let page = try await journal.events(after: cursor, device: device, types: types, limit: 1000)
                            for event in page {
                                try await writer.write(PublishedEvent(event).sse)
                                cursor = event.id
                            }
                            if page.count < 1000 { break }
                        }
                        lastSent = cursor
                    }
                    streaming: while true {
                        switch await subscription.next() {
                        case .event(let first):
                            // Whatever else is already queued goes out in the same write: one
                            // hand-off to the event loop per batch rather than per event, so a
                            // subscriber that falls behind catches up with fewer, larger writes.
                            var batch: ByteBuffer?
                            var next: PublishedEvent? = first
                            var queued = 0
                            while let event = next {
                                if event.id > lastSent {
                                    if batch == nil {
                                        batch = event.sse
                                    } else {
                                        batch!.writeImmutableBuffer(event.sse)
                                    }
                                    lastSent = event.id
                                }
                                queued += 1
                                next = queued < maximumBatchEvents ? subscription.poll() : nil
                            }
                            if let batch { try await writer.write(batch) }
                        case .idle:
                            try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                        case .lagged:
                            let data = "{\"error\":\"lagged\",\"message\":\"this client fell more than \(core.hub.capacity) events behind and is disconnected; reconnect with Last-Event-ID to resume\",\"last_event_id\":\(lastSent)}"
                            try await writer.write(ByteBuffer(string: "event: lagged\ndata: \(data)\n\n"))
                            break streaming
                        case .finished:
                            break streaming
                        }
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
