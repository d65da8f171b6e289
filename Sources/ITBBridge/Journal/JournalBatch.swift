import GRDB

/// One thing to record in a journal transaction. A batch of these (everything decoded from one
/// read) commits as a single transaction, so a burst of frames costs one synchronous write.
enum JournalOp: Sendable {
    /// A pump `ALARM` transition, deduplicated by (device, alarm id, content).
    case pumpAlarm(PumpAlarm)
    /// A plain event (`device`…) with its rendered data.
    case event(device: String, type: EventType, data: String)
    /// A downsampled snapshot row (`status`, `reservoir`) plus its event.
    case snapshot(device: String, kind: EventType, deviceTimeMs: Int64?, data: String)
    /// A refill, stored once per (device, refill time); its event only when new.
    case refill(device: String, refillTimeMs: Int64, concentration: Int64, filled: Int64, expected: Int64, measured: Int64,
                lot: String, discrepancy: Double?, data: String)
    /// A dose program change plus its event.
    case program(device: String, data: String)
    /// Raise a bridge alarm (no-op when already open).
    case raiseBridgeAlarm(device: String, code: BridgeAlarmCode, priority: String, detail: String)
    /// End a bridge alarm (no-op when none is open).
    case endBridgeAlarm(device: String, code: BridgeAlarmCode)
    /// A link session began (the programmer was identified on a path).
    case sessionStarted(device: String, path: String, bootID: String?)
    /// The device's open link session ended.
    case sessionEnded(device: String, cause: String)

    /// The fields of a pump alarm to store.
    struct PumpAlarm: Sendable, Hashable {
        var device: String
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

    /// Whether this op may commit without an fsync (snapshots only).
    var isSnapshot: Bool {
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
        let snapshotsOnly = ops.allSatisfy(\.isSnapshot)
        return try writeNow(snapshotsOnly ? .deferred : .synchronous, events: ops.count) { db in
            try ops.map { op in try db.apply(op, nowMs: nowMs) }
        }
    }

    /// ``commitNow(_:nowMs:)`` for a caller that must not block its thread (tests, tools).
    func commit(_ ops: [JournalOp], nowMs: Int64) async throws(JournalError) -> [JournalOpResult] {
        try await offloaded { () throws(JournalError) in try self.commitNow(ops, nowMs: nowMs) }
    }
}

extension Database {
    fileprivate func apply(_ op: JournalOp, nowMs: Int64) throws -> JournalOpResult {
        switch op {
        case .pumpAlarm(let alarm):
            return try storePumpAlarm(alarm, nowMs: nowMs)
        case .event(let device, let type, let data):
            return JournalOpResult(events: [try storedEvent(device: device, type: type, data: data, nowMs: nowMs)])
        case .snapshot(let device, let kind, let deviceTimeMs, let data):
            try execute(sql: "INSERT INTO history (device, kind, received_ms, device_time_ms, data) VALUES (?, ?, ?, ?, ?)",
                        arguments: [device, kind.rawValue, nowMs, deviceTimeMs, data])
            return JournalOpResult(events: [try storedEvent(device: device, type: kind, data: data, nowMs: nowMs)])
        case .refill(let device, let time, let concentration, let filled, let expected, let measured, let lot, let discrepancy, let data):
            try execute(sql: """
                INSERT OR IGNORE INTO refill (device, refill_time_ms, concentration_ug_per_ml, volume_filled_ul, expected_residual_ul,
                                              measured_residual_ul, drug_lot, discrepancy, received_ms, event_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)
                """, arguments: [device, time, concentration, filled, expected, measured, lot, discrepancy, nowMs])
            guard changesCount > 0 else { return .none }
            let event = try storedEvent(device: device, type: .refill, data: data, nowMs: nowMs)
            try execute(sql: "UPDATE refill SET event_id = ? WHERE device = ? AND refill_time_ms = ?", arguments: [event.id, device, time])
            return JournalOpResult(events: [event])
        case .program(let device, let data):
            let event = try storedEvent(device: device, type: .program, data: data, nowMs: nowMs)
            try execute(sql: "INSERT INTO dose_program (device, received_ms, data, event_id) VALUES (?, ?, ?, ?)",
                        arguments: [device, nowMs, data, event.id])
            return JournalOpResult(events: [event])
        case .raiseBridgeAlarm(let device, let code, let priority, let detail):
            guard let (record, event) = try raiseBridgeAlarm(device: device, code: code, priority: priority, detail: detail, nowMs: nowMs) else {
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

    func storedEvent(device: String, type: EventType, data: String, nowMs: Int64) throws -> StoredEvent {
        let id = try insertEvent(timeMs: nowMs, device: device, type: type.rawValue, data: data)
        return StoredEvent(id: id, timeMs: nowMs, device: device, type: type.rawValue, data: data)
    }
}

extension Journal {
    /// Alarms, ordered by the event id of their last change, filtered as `GET /v1/alarms` asks.
    public func alarms(active: Bool?, device: String?, sinceEventID: Int64?, limit: Int) async throws(JournalError) -> [AlarmRecord] {
        try await read { db in
            var clauses: [String] = []
            var arguments: [any DatabaseValueConvertible] = []
            if let active { clauses.append(active ? "state != 'ended'" : "state = 'ended'") }
            if let device {
                clauses.append("device = ?")
                arguments.append(device)
            }
            if let sinceEventID {
                clauses.append("event_id > ?")
                arguments.append(sinceEventID)
            }
            let filter = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
            arguments.append(limit)
            return try Row.fetchAll(db, sql: "SELECT * FROM alarm \(filter) ORDER BY event_id LIMIT ?",
                                    arguments: StatementArguments(arguments)).map(AlarmRecord.init(row:))
        }
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

    /// Acknowledges an alarm for `uid` (see ``AcknowledgeOutcome``), on the calling thread.
    func acknowledgeNow(alarm id: Int64, uid: Int64, nowMs: Int64) throws(JournalError) -> AcknowledgeOutcome {
        try writeNow(.synchronous, events: 1) { db in try db.acknowledgeAlarm(id: id, uid: uid, nowMs: nowMs) }
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
