import ITBClient
import NIOPosix

/// One bridge's `GET /v1/events` stream, opened after a journal id, read in batches.
///
/// The client (``EventStreamReader``) blocks, so each read runs on NIO's blocking thread pool,
/// never on the cooperative pool. `Sendable` for real: the reader is itself `Sendable` (its state
/// is behind a lock) and the rest is immutable.
public struct BridgeEventStream: Sendable {
    /// How a batch read ended.
    public enum End: Hashable, Sendable {
        /// The batch is complete by the ``BatchRule``, or nothing more came for now.
        case more
        /// The bridge said `lagged` and disconnected: resume with `Last-Event-ID`.
        case lagged
        /// The stream ended (the bridge stopped or restarted).
        case ended
    }

    /// A batch: the events (journal ids ascending) and how the read ended.
    public struct Batch: Sendable {
        /// The events read.
        public var events: [JournalEvent]
        /// How the read ended.
        public var end: End
    }

    private let reader: EventStreamReader
    /// The socket, for messages.
    public let socketPath: String

    /// Opens the stream after `lastEventID` (the bridge sends every journal event above it, then
    /// live ones).
    public static func open(socketPath: String, after lastEventID: Int64) async throws(ForwardError) -> BridgeEventStream {
        let client = UnixHTTPClient(socketPath: socketPath, timeout: .seconds(10))
        do {
            let reader = try await NIOThreadPool.singleton.runIfActive { try client.events("/v1/events", lastEventID: lastEventID) }
            return BridgeEventStream(reader: reader, socketPath: socketPath)
        } catch {
            throw .bridge(error)
        }
    }

    /// The newest journal id of the bridge (`GET /v1/health`'s `last_event_id`).
    public static func lastEventID(socketPath: String) async throws(ForwardError) -> Int64 {
        let client = UnixHTTPClient(socketPath: socketPath, timeout: .seconds(10))
        let response: HTTPResponse
        do {
            response = try await NIOThreadPool.singleton.runIfActive { try client.get("/v1/health") }
        } catch {
            throw .bridge(error)
        }
        guard response.status == 200 else { throw .bridge("GET /v1/health answered \(response.status): \(response.text)") }
        // The one number the forwarder needs; a full JSON parse is not worth a dependency here.
        guard let range = response.text.range(of: "\"last_event_id\":") else {
            throw .bridge("GET /v1/health has no last_event_id: is this an itb-bridged of this release?")
        }
        let digits = response.text[range.upperBound...].prefix { $0.isNumber || $0 == "-" }
        return Int64(digits) ?? 0
    }

    /// Closes the stream.
    public func close() { reader.close() }

    /// Reads events until `rule` says the batch is complete, or `idleWait` passes with no event
    /// (an empty batch: the caller checks for cancellation and reads again), or the stream lags
    /// or ends. Events without an id (live snapshots the bridge could not journal) are not in
    /// the journal and are skipped.
    public func read(_ rule: BatchRule, idleWait: Duration = .milliseconds(250)) async throws(ForwardError) -> Batch {
        let reader = self.reader
        do {
            return try await NIOThreadPool.singleton.runIfActive { try Self.readBlocking(reader, rule, idleWait: idleWait) }
        } catch {
            throw .bridge(error)
        }
    }

    private static func readBlocking(_ reader: EventStreamReader, _ rule: BatchRule, idleWait: Duration) throws(ClientError) -> Batch {
        var events: [JournalEvent] = []
        var firstAt: ContinuousClock.Instant?
        while true {
            let wait: Duration
            if let firstAt {
                let age = ContinuousClock.now - firstAt
                if rule.isComplete(count: events.count, age: age) { return Batch(events: events, end: .more) }
                wait = rule.maxDelay - age
            } else {
                wait = idleWait
            }
            let event: ServerSentEvent?
            do {
                event = try reader.next(timeout: wait)
            } catch {
                if case .timedOut = error { return Batch(events: events, end: .more) }
                throw error
            }
            guard let event else { return Batch(events: events, end: .ended) }
            if event.event == "lagged" { return Batch(events: events, end: .lagged) }
            guard let id = event.id else { continue }
            events.append(JournalEvent(id: id, type: event.event, data: event.data))
            if firstAt == nil { firstAt = ContinuousClock.now }
        }
    }
}
