// Running a real Forwarder against a real bridge and PostgreSQL, and comparing what each holds.

import Foundation
import ITBBridgeTestSupport
import ITBClient
import ITBForward
import ITBTestSupport
import Logging
import PostgresNIO
import Synchronization

/// A ``Forwarder`` running in a task of its own, until stopped (as SIGTERM stops itb-forward).
final class RunningForwarder: Sendable {
    /// The last committed position, shared with the forwarder's callback.
    private final class Committed: Sendable {
        let value = Mutex<Int64>(0)
    }
    private let task: Task<Void, any Error>
    private let committed = Committed()

    /// Starts forwarding the bridge at `socketPath` into `postgres` as `bridgeID`.
    init(socketPath: String, postgres: ScratchPostgres, bridgeID: String, batch: BatchRule = BatchRule()) throws {
        var settings = ForwardSettings()
        settings.socketPath = socketPath
        settings.postgres = try postgres.location
        settings.bridgeID = bridgeID
        settings.batch = batch
        var logger = Logger(label: "itb-forward-test")
        logger.logLevel = .warning
        let committed = self.committed
        let forwarder = Forwarder(settings: settings, logger: logger, backoff: Backoff(initial: .milliseconds(50), maximum: .milliseconds(500)),
                                  onCommit: { position, _ in committed.value.withLock { $0 = position } })
        task = Task { try await forwarder.run() }
    }

    /// The last position it committed.
    var position: Int64 { committed.value.withLock { $0 } }

    /// Stops it and waits; a forwarder stopped at any instant leaves whole batches only.
    func stop() async throws {
        task.cancel()
        try await task.value
    }
}

/// The newest journal id of the bridge at `client`.
func journalEnd(_ client: UnixHTTPClient) async throws -> Int64 {
    let health = try await blocking { try client.get("/v1/health") }
    let object = try JSONObject.parse(health.body)
    return (object["last_event_id"] as? NSNumber)?.int64Value ?? 0
}

/// Waits until PostgreSQL's position for `bridgeID` reaches the bridge's newest journal id.
func waitUntilForwarded(_ connection: PostgresConnection, bridgeID: String, client: UnixHTTPClient,
                        timeout: Duration = .seconds(60)) async throws {
    let deadline = ContinuousClock.now + timeout
    var position: Int64 = -1
    var end: Int64 = 0
    while ContinuousClock.now < deadline {
        end = try await journalEnd(client)
        // The forwarder may not have created the schema yet.
        let migrated = try await connection.scalar("SELECT to_regclass('itb_forward_position') IS NOT NULL", as: Bool.self) ?? false
        if migrated {
            position = try await connection.scalar("SELECT last_event_id FROM itb_forward_position WHERE bridge_id = '\(bridgeID)'", as: Int64.self) ?? -1
        }
        if position >= end { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw HarnessError("bridge \(bridgeID): PostgreSQL is at \(position), the journal at \(end)")
}

/// Every event of the bridge's journal (`/v1/events` from 0 up to its newest id): id, type, JSON.
func journalEvents(_ client: UnixHTTPClient) async throws -> [JournalEvent] {
    let end = try await journalEnd(client)
    return try await blocking {
        let stream = try client.events("/v1/events", lastEventID: 0)
        defer { stream.close() }
        var events: [JournalEvent] = []
        while events.last.map({ $0.id < end }) ?? (end > 0) {
            guard let event = try stream.next(timeout: .seconds(10)) else { break }
            if let id = event.id { events.append(JournalEvent(id: id, type: event.event, data: event.data)) }
        }
        return events
    }
}

/// The rows of `itb_event` for `bridgeID`, by event id.
func forwardedEvents(_ connection: PostgresConnection, bridgeID: String) async throws -> [JournalEvent] {
    var events: [JournalEvent] = []
    let rows = try await connection.query("SELECT event_id, type, data::text FROM itb_event WHERE bridge_id = \(bridgeID) ORDER BY event_id",
                                          logger: Logger(label: "test-postgres"))
    for try await (id, type, data) in rows.decode((Int64, String, String).self) {
        events.append(JournalEvent(id: id, type: type, data: data))
    }
    return events
}

/// What differs between the journal and what was forwarded, event by event (JSON compared as
/// values: jsonb orders keys its own way); empty when every event is there once with its data.
func differences(journal: [JournalEvent], forwarded: [JournalEvent]) throws -> [String] {
    var problems: [String] = []
    let ids = forwarded.map(\.id)
    if Set(ids).count != ids.count { problems.append("an event id is in itb_event more than once") }
    let byID = Dictionary(forwarded.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    for event in journal {
        guard let row = byID[event.id] else {
            problems.append("event \(event.id) (\(event.type)) is missing")
            continue
        }
        let a = try JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? NSDictionary
        let b = try JSONSerialization.jsonObject(with: Data(row.data.utf8)) as? NSDictionary
        if row.type != event.type || a == nil || a != b { problems.append("event \(event.id) differs: \(event.data) vs \(row.data)") }
    }
    let journalIDs = Set(journal.map(\.id))
    for id in ids where !journalIDs.contains(id) { problems.append("event \(id) is in itb_event but not in the journal") }
    return problems
}
