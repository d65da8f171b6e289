import GRDB

/// One thing to record in a journal transaction. A batch of these (everything decoded from one
/// read) commits as a single transaction, so a burst of frames costs one synchronous write.
enum JournalOp: Sendable {
    /// A pump `ALARM` transition, deduplicated by (device, alarm id, content).
    case pumpAlarm(PumpAlarm)
    /// A plain event (`device`…) with its rendered data.
    case event(device: String, type: EventType, data: String)
    /// A downsampled snapshot row (`status`, `reservoir`) plus its event, of `pump` (nil: outside
    /// any pump session).
    case snapshot(device: String, pump: String?, kind: EventType, deviceTimeMs: Int64?, data: String)
    /// A refill, stored once per (device, refill time); its event only when new. `capacityUL` is
    /// the pump's reservoir capacity, for the discrepancy bound.
    case refill(device: String, pump: String?, capacityUL: Int64?, refillTimeMs: Int64, concentration: Int64, filled: Int64, expected: Int64,
                measured: Int64, lot: String, discrepancy: Double?, data: String)
    /// A dose program change plus its event, with the concentration in force (from the status).
    case program(device: String, pump: String?, concentration: Int64?, data: String)
    /// A pump session began on a programmer: the pump's row is created or updated.
    case pumpSessionBegan(PumpSeen)
    /// The same pump's session was announced again (protocol minor 1): its row is updated.
    case pumpSeen(PumpSeen)
    /// The pump session on `programmer` ended.
    case pumpSessionEnded(pump: String, programmer: String, cause: PumpContextEnd, atMs: Int64)
    /// A pump's latest value of a kind (no event of its own: the snapshot has it).
    case pumpLatest(PumpLatest)
    /// Raise a bridge alarm (no-op when already open).
    case raiseBridgeAlarm(device: String, pump: String?, code: BridgeAlarmCode, priority: String, detail: String)
    /// End a bridge alarm (no-op when none is open).
    case endBridgeAlarm(device: String, code: BridgeAlarmCode)
    /// A link session began (the programmer was identified on a path).
    case sessionStarted(device: String, path: String, bootID: String?)
    /// The device's open link session ended.
    case sessionEnded(device: String, cause: String)

    /// The fields of a pump alarm to store.
    struct PumpAlarm: Sendable, Hashable {
        var device: String
        /// The pump in session when the alarm came; nil outside a session.
        var pump: String?
        var alarmID: Int64
        var codeName: String
        var codeRaw: Int
        var priorityName: String
        var priorityRaw: Int?
        var raised: Bool
        var transitionRaw: Int
        var detail: String
        /// The device's onset time as sent (nil when absent); rendered `null` with its raw value
        /// when RFC 3339 cannot show it.
        var onsetTimeMs: Int64?
        /// Everything the message says, as one string: the same `alarm_id` with the same content
        /// is a retransmission, with other content a reused id.
        var content: String

        /// The transition's name in `alarm_message`.
        var transitionName: String { raised ? "raised" : (transitionRaw == 2 ? "cleared" : "unknown") }
    }

    /// Whether this op may commit without an fsync, and be published before it is written
    /// (snapshots, and a pump's latest values, which the next snapshot renews).
    var isDeferrable: Bool {
        switch self {
        case .snapshot, .pumpLatest: true
        default: false
        }
    }

    /// Whether this op stores an event whatever the journal holds (a snapshot's).
    var storesEvent: Bool {
        if case .snapshot = self { true } else { false }
    }
}

/// What one op did.
struct JournalOpResult: Sendable {
    /// The events it stored, in id order: the owner publishes them in that order.
    var events: [StoredEvent] = []
    /// The alarms it changed (raised, re-raised, ended), for the log.
    var alarms: [AlarmRecord] = []
    /// For a pump alarm: stored (now or earlier); the `ACK` says `stored` when this is non-nil.
    var alarmOutcome: AlarmStoreOutcome?

    static let none = JournalOpResult()
}

extension Journal {
    /// Commits `ops` as one transaction and returns each op's result in order. Either everything
    /// is stored or nothing is. Batches of snapshots only commit with ``Durability/deferred``;
    /// any other op makes the whole batch synchronous (fsynced before this returns).
    ///
    /// Runs on the calling thread and blocks it for the write (and the fsync): the owner of the
    /// rules (``BridgeCore``) calls it under its lock, so that the ids this assigns are published
    /// in the order they were assigned.
    func commitNow(_ ops: [JournalOp], nowMs: Int64) throws(JournalError) -> [JournalOpResult] {
        let snapshotsOnly = ops.allSatisfy(\.isDeferrable)
        return try writeNow(snapshotsOnly ? .deferred : .synchronous, events: ops.count) { db in
            try ops.map { op in try db.apply(op, nowMs: nowMs) }
        }
    }

    /// Stores queued snapshot batches (``queueSnapshots(_:nowMs:)``) in one transaction on the
    /// writer connection, each snapshot event with the id it was published with.
    func storeQueued(_ db: Database, _ batches: [SnapshotQueue.Batch], events: Int) throws {
        try transaction(db, .deferred, events: events) { db in
            for batch in batches {
                var next = batch.firstEventID
                for op in batch.ops {
                    _ = try db.apply(op, nowMs: batch.nowMs, eventID: op.storesEvent ? next : nil)
                    if op.storesEvent { next += 1 }
                }
            }
        }
    }

    /// ``commitNow(_:nowMs:)`` for a caller that must not block its thread (tests, tools).
    func commit(_ ops: [JournalOp], nowMs: Int64) async throws(JournalError) -> [JournalOpResult] {
        try await offloaded { () throws(JournalError) in try self.commitNow(ops, nowMs: nowMs) }
    }
}

extension Database {
    /// Stores `op`; a snapshot's event gets `eventID` when given (published before its write).
    fileprivate func apply(_ op: JournalOp, nowMs: Int64, eventID: Int64? = nil) throws -> JournalOpResult {
        switch op {
        case .pumpAlarm(let alarm):
            return try storePumpAlarm(alarm, nowMs: nowMs)
        case .event(let device, let type, let data):
            return JournalOpResult(events: [try storedEvent(device: device, type: type, data: data, nowMs: nowMs)])
        case .snapshot(let device, let pump, let kind, let deviceTimeMs, let data):
            try executeCached("INSERT INTO history (device, pump, kind, received_ms, device_time_ms, data) VALUES (?, ?, ?, ?, ?, ?)",
                              [device, pump, kind.rawValue, nowMs, deviceTimeMs, data])
            return JournalOpResult(events: [try storedEvent(id: eventID, device: device, pump: pump, type: kind, data: data, nowMs: nowMs)])
        case .refill(let device, let pump, let capacity, let time, let concentration, let filled, let expected, let measured, let lot,
                     let discrepancy, let data):
            try execute(sql: """
                INSERT OR IGNORE INTO refill (device, pump, capacity_ul, refill_time_ms, concentration_ug_per_ml, volume_filled_ul,
                                              expected_residual_ul, measured_residual_ul, drug_lot, discrepancy, received_ms, event_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
                """, arguments: [device, pump, capacity, time, concentration, filled, expected, measured, lot, discrepancy, nowMs])
            guard changesCount > 0 else { return .none }
            let event = try storedEvent(device: device, pump: pump, type: .refill, data: data, nowMs: nowMs)
            try execute(sql: "UPDATE refill SET event_id = ? WHERE device = ? AND refill_time_ms = ?", arguments: [event.id, device, time])
            return JournalOpResult(events: [event])
        case .program(let device, let pump, let concentration, let data):
            let event = try storedEvent(device: device, pump: pump, type: .program, data: data, nowMs: nowMs)
            try execute(sql: "INSERT INTO dose_program (device, pump, concentration_ug_per_ml, received_ms, data, event_id) VALUES (?, ?, ?, ?, ?, ?)",
                        arguments: [device, pump, concentration, nowMs, data, event.id])
            return JournalOpResult(events: [event])
        case .pumpSessionBegan(let seen):
            try upsertPump(seen)
            try execute(sql: "UPDATE pump_session SET ended_ms = ?, end_cause = 'superseded' WHERE programmer = ? AND ended_ms IS NULL",
                        arguments: [seen.atMs, seen.programmer])
            try execute(sql: "INSERT INTO pump_session (pump, programmer, began_ms) VALUES (?, ?, ?)", arguments: [seen.id, seen.programmer, seen.atMs])
            return .none
        case .pumpSeen(let seen):
            try upsertPump(seen)
            return .none
        case .pumpSessionEnded(let pump, let programmer, let cause, let atMs):
            try execute(sql: "UPDATE pump_session SET ended_ms = ?, end_cause = ? WHERE pump = ? AND programmer = ? AND ended_ms IS NULL",
                        arguments: [atMs, cause.rawValue, pump, programmer])
            try execute(sql: "UPDATE pump SET last_seen_ms = MAX(last_seen_ms, ?) WHERE id = ?", arguments: [atMs, pump])
            return .none
        case .pumpLatest(let latest):
            try storeLatest(latest)
            return .none
        case .raiseBridgeAlarm(let device, let pump, let code, let priority, let detail):
            guard let (record, event) = try raiseBridgeAlarm(device: device, pump: pump, code: code, priority: priority, detail: detail, nowMs: nowMs) else {
                return .none
            }
            return JournalOpResult(events: [event], alarms: [record])
        case .endBridgeAlarm(let device, let code):
            guard let (record, event) = try endBridgeAlarm(device: device, code: code, nowMs: nowMs) else { return .none }
            return JournalOpResult(events: [event], alarms: [record])
        case .sessionStarted(let device, let path, let bootID):
            try execute(sql: "UPDATE device_session SET ended_ms = ?, end_cause = 'superseded' WHERE device = ? AND ended_ms IS NULL",
                        arguments: [nowMs, device])
            try execute(sql: "INSERT INTO device_session (device, path, boot_id, started_ms) VALUES (?, ?, ?, ?)",
                        arguments: [device, path, bootID, nowMs])
            return .none
        case .sessionEnded(let device, let cause):
            try execute(sql: "UPDATE device_session SET ended_ms = ?, end_cause = ? WHERE device = ? AND ended_ms IS NULL",
                        arguments: [nowMs, cause, device])
            return .none
        }
    }

    func storedEvent(id: Int64? = nil, device: String, pump: String? = nil, type: EventType, data: String, nowMs: Int64) throws -> StoredEvent {
        let id = try insertEvent(id: id, timeMs: nowMs, device: device, pump: pump, type: type.rawValue, data: data)
        return StoredEvent(id: id, timeMs: nowMs, device: device, pump: pump, type: type.rawValue, data: data)
    }

    /// Creates the pump's row, or updates what its latest `PUMP_SESSION` says of it.
    fileprivate func upsertPump(_ seen: PumpSeen) throws {
        let s = seen.session
        try execute(sql: """
            INSERT INTO pump (id, manufacturer_code, pump_serial, pump_model, reservoir_capacity_ul, implant_date_ms, battery_state,
                              battery_state_raw, eri_date_ms, first_seen_ms, last_seen_ms, last_programmer)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET pump_model = excluded.pump_model, reservoir_capacity_ul = excluded.reservoir_capacity_ul,
                implant_date_ms = excluded.implant_date_ms, battery_state = excluded.battery_state, battery_state_raw = excluded.battery_state_raw,
                eri_date_ms = excluded.eri_date_ms, last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms), last_programmer = excluded.last_programmer
            """, arguments: [seen.id, Int(s.manufacturerCode), s.pumpSerial, s.pumpModel, Int64(s.reservoirCapacityUL),
                             s.implantDateMs == 0 ? nil : s.implantDateMs, s.batteryState.name ?? "unknown",
                             s.batteryState.isKnown ? nil : Int(s.batteryState.rawValue), s.eriDateMs == 0 ? nil : s.eriDateMs,
                             seen.atMs, seen.atMs, seen.programmer])
    }

    /// Keeps a pump's latest value of a kind on its row.
    fileprivate func storeLatest(_ latest: PumpLatest) throws {
        switch latest.kind {
        case .status:
            try executeCached("UPDATE pump SET status = ?, status_ms = ?, last_seen_ms = MAX(last_seen_ms, ?) WHERE id = ?",
                              [latest.data, latest.atMs, latest.atMs, latest.pump])
        case .program:
            try executeCached("UPDATE pump SET program = ?, program_ms = ?, last_seen_ms = MAX(last_seen_ms, ?) WHERE id = ?",
                              [latest.data, latest.atMs, latest.atMs, latest.pump])
        default:
            let figures = latest.reservoir
            try executeCached("""
                UPDATE pump SET reservoir = ?, reservoir_ms = ?, last_seen_ms = MAX(last_seen_ms, ?), volume_ul = ?, flow_ul_per_day = ?,
                                reading_at_ms = ?, refill_due_ms = ?, derived = ?
                WHERE id = ?
                """, [latest.data, latest.atMs, latest.atMs, figures?.volumeUL, figures?.flowULPerDay, figures?.readingAtMs,
                                 figures?.refillDueMs, figures?.derived, latest.pump])
        }
    }
}

extension Journal {
    /// Alarms, ordered by the event id of their last change, by the common filters (see
    /// ``alarms(_:)`` for every filter).
    public func alarms(active: Bool?, device: String?, pump: String? = nil, sinceEventID: Int64?, limit: Int) async throws(JournalError) -> [AlarmRecord] {
        var query = AlarmQuery()
        query.active = active
        query.device = device
        query.pump = pump
        query.sinceEventID = sinceEventID
        query.limit = limit
        return try await alarms(query)
    }

    /// One alarm with its transitions.
    public func alarm(id: Int64) async throws(JournalError) -> (AlarmRecord, [AlarmTransitionRecord])? {
        try await read { db in
            guard let alarm = try AlarmRecord.fetch(db, id: id) else { return nil }
            let transitions = try Row.fetchAll(db, sql: "SELECT * FROM alarm_transition WHERE alarm_ref = ? ORDER BY id", arguments: [id])
                .map { AlarmTransitionRecord(state: $0["state"], atMs: $0["at_ms"], byUID: $0["by_uid"], eventID: $0["event_id"]) }
            return (alarm, transitions)
        }
    }

    /// Open bridge alarms per device, to restore the rules' view after a restart. Codes this
    /// version does not know are left out (the rules neither raise nor end them).
    func openBridgeAlarms() throws(JournalError) -> [String: Set<BridgeAlarmCode>] {
        try readNow { db in
            var open: [String: Set<BridgeAlarmCode>] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT device, code FROM alarm WHERE source = 'bridge' AND state != 'ended'") {
                if let code = BridgeAlarmCode(rawValue: row["code"]) { open[row["device"], default: []].insert(code) }
            }
            return open
        }
    }

    /// The pump alarms not yet ended, by pump and code (restored into the rules at start).
    func openPumpAlarms() throws(JournalError) -> [String: [Int: PumpAlarmMark]] {
        try readNow { db in
            var open: [String: [Int: PumpAlarmMark]] = [:]
            for row in try Row.fetchAll(db, sql: """
                SELECT pump, device, code_raw, device_alarm_id FROM alarm
                WHERE source = 'pump' AND state != 'ended' AND pump IS NOT NULL AND code_raw IS NOT NULL ORDER BY id
                """) {
                let id: Int64? = row["device_alarm_id"]
                open[row["pump"], default: [:]][row["code_raw"]] = PumpAlarmMark(programmer: row["device"], alarmID: id ?? 0, raised: true)
            }
            return open
        }
    }

    /// Acknowledges an alarm for `uid` (whose user name then was `userName`, with an optional
    /// `note`; see ``AcknowledgeOutcome``), on the calling thread.
    func acknowledgeNow(alarm id: Int64, uid: Int64, userName: String? = nil, note: String? = nil, nowMs: Int64) throws(JournalError) -> AcknowledgeOutcome {
        try writeNow(.synchronous, events: 1) { db in try db.acknowledgeAlarm(id: id, uid: uid, userName: userName, note: note, nowMs: nowMs) }
    }

    /// The number of alarm messages stored for a device (tests, diagnostics).
    public func alarmMessageCount(device: String) async throws(JournalError) -> Int {
        try await read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM alarm_message WHERE device = ?", arguments: [device]) ?? 0 }
    }
}

/// One transition of an alarm.
public struct AlarmTransitionRecord: Hashable, Sendable {
    /// `active`, `acknowledged`, `ended`.
    public var state: String
    /// When (host ms).
    public var atMs: Int64
    /// Who, for an acknowledgement.
    public var byUID: Int64?
    /// The event that published it.
    public var eventID: Int64
}
