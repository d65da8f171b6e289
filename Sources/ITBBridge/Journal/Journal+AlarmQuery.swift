import GRDB

/// What `GET /v1/alarms` asks for, as a value: every filter is optional and they combine with AND.
public struct AlarmQuery: Hashable, Sendable {
    /// The priorities a client may filter on.
    public static let priorities = ["high", "medium", "low", "info", "unknown"]

    /// true: not ended (active or acknowledged); false: ended.
    public var active: Bool?
    /// Only these states (any of them).
    public var states: Set<AlarmRecord.State>?
    /// Only these priorities (any of them).
    public var priorities: Set<String>?
    /// Only this programmer's alarms.
    public var device: String?
    /// Only this pump's alarms.
    public var pump: String?
    /// Only alarms whose last change has an event id above this.
    public var sinceEventID: Int64?
    /// At most this many.
    public var limit: Int = 1000

    /// Every alarm, at most 1000.
    public init() {}
}

extension Journal {
    /// Alarms matching `query`, oldest change first (by event id, so that `since` pages on).
    public func alarms(_ query: AlarmQuery) async throws(JournalError) -> [AlarmRecord] {
        try await read { db in
            var clauses: [String] = []
            var arguments: [any DatabaseValueConvertible] = []
            if let active = query.active { clauses.append(active ? "state != 'ended'" : "state = 'ended'") }
            if let states = query.states {
                clauses.append("state IN (" + Array(repeating: "?", count: states.count).joined(separator: ",") + ")")
                arguments += states.map(\.rawValue).sorted()
            }
            if let priorities = query.priorities {
                clauses.append("priority IN (" + Array(repeating: "?", count: priorities.count).joined(separator: ",") + ")")
                arguments += priorities.sorted()
            }
            if let device = query.device {
                clauses.append("device = ?")
                arguments.append(device)
            }
            if let pump = query.pump {
                clauses.append("pump = ?")
                arguments.append(pump)
            }
            if let since = query.sinceEventID {
                clauses.append("event_id > ?")
                arguments.append(since)
            }
            let filter = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
            arguments.append(query.limit)
            return try Row.fetchAll(db, sql: "SELECT * FROM alarm \(filter) ORDER BY event_id LIMIT ?",
                                    arguments: StatementArguments(arguments)).map(AlarmRecord.init(row:))
        }
    }

    /// True when the journal holds anything for programmer `device` (an event or an alarm): the
    /// bridge has seen it, even if not since this start.
    public func hasRecords(device: String) async throws(JournalError) -> Bool {
        try await read { db in
            try Int.fetchOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM event WHERE device = ?) OR EXISTS (SELECT 1 FROM alarm WHERE device = ?)
                """, arguments: [device, device]) == 1
        }
    }
}
