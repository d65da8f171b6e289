import GRDB

/// A pump as the journal holds it: identity, battery, its latest values, and what the worklist
/// needs (`GET /v1/pumps`, `GET /v1/pumps/{id}`).
public struct PumpRecord: Hashable, Sendable {
    /// ``PumpIdentity/id``.
    public var id: String
    public var manufacturerCode: Int
    public var pumpSerial: String
    public var pumpModel: String
    public var reservoirCapacityUL: Int64
    public var implantDateMs: Int64?
    /// `ok`, `eri`, `eos`, or `unknown` (with ``batteryStateRaw``).
    public var batteryState: String
    public var batteryStateRaw: Int?
    public var eriDateMs: Int64?
    public var firstSeenMs: Int64
    public var lastSeenMs: Int64
    /// The programmer that interrogated it last.
    public var lastProgrammer: String
    /// The latest status, reservoir and program as their events rendered them.
    public var status: String?
    public var reservoir: String?
    public var program: String?
    /// From the latest reservoir reading (see ``PumpLatest/ReservoirFigures``).
    public var volumeUL: Double?
    public var flowULPerDay: Double?
    public var readingAtMs: Int64?
    public var refillDueMs: Int64?
    /// The `derived` object as JSON.
    public var derived: String?
    /// Alarms of this pump not yet ended.
    public var activeAlarms: Int
    /// Its last interrogation.
    public var lastSession: PumpSessionRecord?

    init(row: Row) {
        id = row["id"]
        manufacturerCode = row["manufacturer_code"]
        pumpSerial = row["pump_serial"]
        pumpModel = row["pump_model"]
        reservoirCapacityUL = row["reservoir_capacity_ul"]
        implantDateMs = row["implant_date_ms"]
        batteryState = row["battery_state"]
        batteryStateRaw = row["battery_state_raw"]
        eriDateMs = row["eri_date_ms"]
        firstSeenMs = row["first_seen_ms"]
        lastSeenMs = row["last_seen_ms"]
        lastProgrammer = row["last_programmer"]
        status = row["status"]
        reservoir = row["reservoir"]
        program = row["program"]
        volumeUL = row["volume_ul"]
        flowULPerDay = row["flow_ul_per_day"]
        readingAtMs = row["reading_at_ms"]
        refillDueMs = row["refill_due_ms"]
        derived = row["derived"]
        activeAlarms = row["active_alarms"] ?? 0
        if let sessionID: Int64 = row["session_id"] {
            lastSession = PumpSessionRecord(id: sessionID, pump: id, programmer: row["session_programmer"], beganMs: row["session_began_ms"],
                                            endedMs: row["session_ended_ms"], endCause: row["session_end_cause"])
        }
    }
}

/// One interrogation session of a pump (`GET /v1/pumps/{id}/sessions`).
public struct PumpSessionRecord: Hashable, Sendable {
    public var id: Int64
    public var pump: String
    public var programmer: String
    public var beganMs: Int64
    public var endedMs: Int64?
    /// ``PumpContextEnd`` as text, `superseded`, or nil while open.
    public var endCause: String?
}

/// One reservoir reading of a pump (`GET /v1/pumps/{id}/reservoir`).
public struct PumpReading: Hashable, Sendable {
    /// The history row id (the cursor).
    public var id: Int64
    public var programmer: String
    public var receivedMs: Int64
    public var deviceTimeMs: Int64?
    /// The reading as its event rendered it.
    public var data: String
}

/// One refill of a pump, with what the refill checks need.
public struct PumpRefillRecord: Hashable, Sendable {
    public var programmer: String
    public var refillTimeMs: Int64
    public var concentration: Int64
    public var filled: Int64
    public var expected: Int64
    public var measured: Int64
    public var lot: String
    public var capacityUL: Int64?
    public var receivedMs: Int64
    public var eventID: Int64
}

/// One dose program of a pump, as received.
public struct PumpProgramRecord: Hashable, Sendable {
    public var programmer: String
    public var receivedMs: Int64
    public var concentration: Int64?
    /// The program as its event rendered it.
    public var data: String
    public var eventID: Int64
}

/// What `GET /v1/pumps` filters on.
public struct PumpFilter: Hashable, Sendable {
    /// Only pumps whose refill is due before this (host ms); pumps without a due date are left out.
    public var dueBeforeMs: Int64?
    /// Only this battery state.
    public var battery: String?
    /// Only pumps with (true) or without (false) active alarms.
    public var hasActiveAlarms: Bool?

    /// Creates a filter.
    public init(dueBeforeMs: Int64? = nil, battery: String? = nil, hasActiveAlarms: Bool? = nil) {
        self.dueBeforeMs = dueBeforeMs
        self.battery = battery
        self.hasActiveAlarms = hasActiveAlarms
    }
}

/// Where a page of the worklist ends: the last row's due date (nil: no due date, sorted last) and id.
public struct PumpCursor: Hashable, Sendable {
    public var refillDueMs: Int64?
    public var id: String

    /// `<due ms or "none">~<id>`: opaque to clients.
    public var text: String { (refillDueMs.map(String.init) ?? "none") + "~" + id }

    /// Parses ``text``; nil when malformed.
    public init?(_ text: String) {
        guard let split = text.firstIndex(of: "~") else { return nil }
        let due = text[..<split]
        id = String(text[text.index(after: split)...])
        if due == "none" {
            refillDueMs = nil
        } else if let value = Int64(due) {
            refillDueMs = value
        } else {
            return nil
        }
        guard !id.isEmpty else { return nil }
    }

    init(refillDueMs: Int64?, id: String) {
        self.refillDueMs = refillDueMs
        self.id = id
    }
}

extension Journal {
    /// A pump row with its active alarm count and its latest session, for the rows of `p`.
    private static let pumpColumns = """
        SELECT p.*,
               (SELECT COUNT(*) FROM alarm a WHERE a.pump = p.id AND a.state != 'ended') AS active_alarms,
               s.id AS session_id, s.programmer AS session_programmer, s.began_ms AS session_began_ms,
               s.ended_ms AS session_ended_ms, s.end_cause AS session_end_cause
        """
    private static let latestSession = " LEFT JOIN pump_session s ON s.id = (SELECT MAX(id) FROM pump_session WHERE pump = p.id)"
    private static let pumpSelect = pumpColumns + " FROM pump p" + latestSession
    /// The worklist's order (pumps without a due date last).
    private static let worklistOrder = "refill_due_ms IS NULL, refill_due_ms, id"

    /// The refill worklist: pumps sorted by refill due date (pumps without one last), then id,
    /// filtered, one page after `cursor`.
    public func pumps(_ filter: PumpFilter, after cursor: PumpCursor?, limit: Int) async throws(JournalError) -> [PumpRecord] {
        try await read { db in
            var clauses: [String] = []
            var arguments: [any DatabaseValueConvertible] = []
            if let due = filter.dueBeforeMs {
                clauses.append("p.refill_due_ms < ?")
                arguments.append(due)
            }
            if let battery = filter.battery {
                clauses.append("p.battery_state = ?")
                arguments.append(battery)
            }
            if let active = filter.hasActiveAlarms {
                clauses.append((active ? "" : "NOT ") + "EXISTS (SELECT 1 FROM alarm a WHERE a.pump = p.id AND a.state != 'ended')")
            }
            if let cursor {
                if let due = cursor.refillDueMs {
                    clauses.append("(p.refill_due_ms > ? OR (p.refill_due_ms = ? AND p.id > ?) OR p.refill_due_ms IS NULL)")
                    arguments += [due, due, cursor.id]
                } else {
                    clauses.append("(p.refill_due_ms IS NULL AND p.id > ?)")
                    arguments.append(cursor.id)
                }
            }
            let filter = clauses.isEmpty ? "" : " WHERE " + clauses.joined(separator: " AND ")
            arguments.append(limit)
            // The page is chosen on the narrow columns first (the due-date index, no JSON, no
            // subquery), then only its rows are read whole with their alarm count and session:
            // the cost follows the page size, not the number of pumps.
            let sql = Self.pumpColumns
                + " FROM (SELECT p.id, p.refill_due_ms FROM pump p" + filter + " ORDER BY " + Self.worklistOrder + " LIMIT ?) page"
                + " JOIN pump p ON p.id = page.id" + Self.latestSession
                + " ORDER BY page.refill_due_ms IS NULL, page.refill_due_ms, page.id"
            return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)).map(PumpRecord.init(row:))
        }
    }

    /// One pump; nil when the journal has never seen it.
    public func pump(id: String) async throws(JournalError) -> PumpRecord? {
        try await read { db in
            try Row.fetchOne(db, sql: Self.pumpSelect + " WHERE p.id = ?", arguments: [id]).map(PumpRecord.init(row:))
        }
    }

    /// A pump's reservoir readings, oldest first, received in [since, until), after the row `after`.
    public func pumpReadings(id: String, sinceMs: Int64?, untilMs: Int64?, after: Int64?, limit: Int) async throws(JournalError) -> [PumpReading] {
        try await read { db in
            var sql = "SELECT id, device, received_ms, device_time_ms, data FROM history WHERE pump = ? AND kind = 'reservoir'"
            var arguments: [any DatabaseValueConvertible] = [id]
            if let sinceMs { sql += " AND received_ms >= ?"; arguments.append(sinceMs) }
            if let untilMs { sql += " AND received_ms < ?"; arguments.append(untilMs) }
            if let after { sql += " AND id > ?"; arguments.append(after) }
            sql += " ORDER BY id LIMIT ?"
            arguments.append(limit)
            return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)).map {
                PumpReading(id: $0["id"], programmer: $0["device"], receivedMs: $0["received_ms"], deviceTimeMs: $0["device_time_ms"], data: $0["data"])
            }
        }
    }

    /// A pump's refills, by refill time.
    public func pumpRefills(id: String) async throws(JournalError) -> [PumpRefillRecord] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM refill WHERE pump = ? ORDER BY refill_time_ms, received_ms", arguments: [id]).map {
                PumpRefillRecord(programmer: $0["device"], refillTimeMs: $0["refill_time_ms"], concentration: $0["concentration_ug_per_ml"],
                                 filled: $0["volume_filled_ul"], expected: $0["expected_residual_ul"], measured: $0["measured_residual_ul"],
                                 lot: $0["drug_lot"], capacityUL: $0["capacity_ul"], receivedMs: $0["received_ms"], eventID: $0["event_id"])
            }
        }
    }

    /// A pump's dose programs, in the order received.
    public func pumpPrograms(id: String) async throws(JournalError) -> [PumpProgramRecord] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM dose_program WHERE pump = ? ORDER BY id", arguments: [id]).map {
                PumpProgramRecord(programmer: $0["device"], receivedMs: $0["received_ms"], concentration: $0["concentration_ug_per_ml"],
                                  data: $0["data"], eventID: $0["event_id"])
            }
        }
    }

    /// A pump's interrogation sessions, oldest first.
    public func pumpSessions(id: String) async throws(JournalError) -> [PumpSessionRecord] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM pump_session WHERE pump = ? ORDER BY id", arguments: [id]).map {
                PumpSessionRecord(id: $0["id"], pump: $0["pump"], programmer: $0["programmer"], beganMs: $0["began_ms"],
                                  endedMs: $0["ended_ms"], endCause: $0["end_cause"])
            }
        }
    }

    /// True when the journal has seen this pump.
    public func pumpExists(id: String) async throws(JournalError) -> Bool {
        try await read { db in try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM pump WHERE id = ?)", arguments: [id]) ?? false }
    }
}
