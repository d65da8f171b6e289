import GRDB
public import ITBJSON

/// An alarm condition as the journal holds it and the API shows it: raised by the pump (or by the
/// bridge itself), acknowledged by someone, ended when the condition cleared. After IHE PCD ACM.
public struct AlarmRecord: Hashable, Sendable {
    /// Alarm states (IHE PCD Alert Communication Management).
    public enum State: String, Hashable, Sendable {
        /// The condition is present and nobody has acknowledged it.
        case active
        /// The condition is present; a person acknowledged it (nothing changes on the pump).
        case acknowledged
        /// The condition has cleared.
        case ended
    }

    /// The bridge's id for this alarm (the API's `{alarm}`).
    public var id: Int64
    /// Programmer serial.
    public var device: String
    /// `pump` (reported by the pump) or `bridge` (raised by the daemon).
    public var source: String
    /// Code name (`low_reservoir`, `link_lost`, or `unknown`).
    public var code: String
    /// The pump's raw code (nil for the bridge's own alarms).
    public var codeRaw: Int?
    /// Priority name (`high`, `medium`, `low`, `info`, or `unknown`).
    public var priority: String
    /// The pump's raw priority when this version does not know it.
    public var priorityRaw: Int?
    /// Where the alarm is in its life.
    public var state: State
    /// Detail text.
    public var detail: String
    /// The pump's alarm id of the raise.
    public var deviceAlarmID: Int64?
    /// The pump's alarm id of the clear.
    public var clearedDeviceAlarmID: Int64?
    /// Device clock at onset.
    public var onsetTimeMs: Int64?
    /// When the bridge stored the raise (host time).
    public var raisedAtMs: Int64
    /// When the bridge stored the end.
    public var clearedAtMs: Int64?
    /// When it was acknowledged.
    public var acknowledgedAtMs: Int64?
    /// Who acknowledged it (the peer's uid from `SO_PEERCRED`).
    public var acknowledgedByUID: Int64?
    /// The event id of its last change.
    public var eventID: Int64

    init(row: Row) {
        id = row["id"]
        device = row["device"]
        source = row["source"]
        code = row["code"]
        codeRaw = row["code_raw"]
        priority = row["priority"]
        priorityRaw = row["priority_raw"]
        state = State(rawValue: row["state"]) ?? .active
        detail = row["detail"]
        deviceAlarmID = row["device_alarm_id"]
        clearedDeviceAlarmID = row["cleared_device_alarm_id"]
        onsetTimeMs = row["onset_time_ms"]
        raisedAtMs = row["raised_at_ms"]
        clearedAtMs = row["cleared_at_ms"]
        acknowledgedAtMs = row["acknowledged_at_ms"]
        acknowledgedByUID = row["acknowledged_by_uid"]
        eventID = row["event_id"]
    }

    /// Writes the alarm as the API's JSON object.
    public func writeJSON(into json: inout JSONWriter) {
        json.beginObject()
        json.key("id"); json.int(id)
        json.key("device"); json.string(device)
        json.key("source"); json.string(source)
        json.key("code"); json.string(code)
        json.key("code_raw"); if let codeRaw { json.int(codeRaw) } else { json.null() }
        json.key("priority"); json.string(priority)
        if let priorityRaw { json.key("priority_raw"); json.int(priorityRaw) }
        json.key("state"); json.string(state.rawValue)
        json.key("detail"); json.string(detail)
        json.key("device_alarm_id"); if let deviceAlarmID { json.int(deviceAlarmID) } else { json.null() }
        json.key("cleared_device_alarm_id"); if let clearedDeviceAlarmID { json.int(clearedDeviceAlarmID) } else { json.null() }
        json.key("onset_time"); if let onsetTimeMs { json.time(ms: onsetTimeMs) } else { json.null() }
        json.key("raised_at"); json.time(ms: raisedAtMs)
        json.key("cleared_at"); if let clearedAtMs { json.time(ms: clearedAtMs) } else { json.null() }
        json.key("acknowledged_at"); if let acknowledgedAtMs { json.time(ms: acknowledgedAtMs) } else { json.null() }
        json.key("acknowledged_by_uid"); if let acknowledgedByUID { json.int(acknowledgedByUID) } else { json.null() }
        json.key("event_id"); json.int(eventID)
        json.endObject()
    }

    /// The alarm as a JSON string (the SSE event's data).
    public var jsonString: String {
        var json = JSONWriter(capacity: 512)
        writeJSON(into: &json)
        return String(decoding: json.bytes, as: UTF8.self)
    }

    static func fetch(_ db: Database, id: Int64) throws -> AlarmRecord? {
        try Row.fetchOne(db, sql: "SELECT * FROM alarm WHERE id = ?", arguments: [id]).map(AlarmRecord.init(row:))
    }

    /// The open (not ended) alarm of this device, source and code, if any.
    static func fetchOpen(_ db: Database, device: String, source: String, code: String, codeRaw: Int?) throws -> AlarmRecord? {
        if let codeRaw {
            return try Row.fetchOne(db, sql: """
                SELECT * FROM alarm WHERE device = ? AND source = ? AND code_raw = ? AND state != 'ended' ORDER BY id DESC LIMIT 1
                """, arguments: [device, source, codeRaw]).map(AlarmRecord.init(row:))
        }
        return try Row.fetchOne(db, sql: """
            SELECT * FROM alarm WHERE device = ? AND source = ? AND code = ? AND state != 'ended' ORDER BY id DESC LIMIT 1
            """, arguments: [device, source, code]).map(AlarmRecord.init(row:))
    }
}

/// What storing one pump `ALARM` message did.
public enum AlarmStoreOutcome: Hashable, Sendable {
    /// Stored; the alarm changed and this event was published.
    case stored(AlarmRecord, event: StoredEvent)
    /// Already stored earlier (a retransmission): acknowledge again, publish nothing.
    case duplicate
}

extension Database {
    /// Stores one `ALARM` transition from a pump, deduplicated by (device, alarm id), and updates
    /// the alarm condition it belongs to. Runs inside the caller's transaction.
    func storePumpAlarm(
        device: String, alarmID: Int64, codeName: String, codeRaw: Int, priorityName: String, priorityRaw: Int?,
        raised: Bool, transitionRaw: Int, detail: String, onsetTimeMs: Int64?, nowMs: Int64
    ) throws -> AlarmStoreOutcome {
        if try Int.fetchOne(self, sql: "SELECT 1 FROM alarm_message WHERE device = ? AND alarm_id = ?", arguments: [device, alarmID]) != nil {
            return .duplicate
        }
        let open = try AlarmRecord.fetchOpen(self, device: device, source: "pump", code: codeName, codeRaw: codeRaw)
        let ref: Int64
        let state: AlarmRecord.State
        if raised {
            if let open {
                // Raised again while still open: one condition, with the newest detail.
                ref = open.id
                state = open.state
                try execute(sql: "UPDATE alarm SET detail = ? WHERE id = ?", arguments: [detail, ref])
            } else {
                try execute(sql: """
                    INSERT INTO alarm (device, source, code, code_raw, priority, priority_raw, state, detail,
                                       device_alarm_id, onset_time_ms, raised_at_ms)
                    VALUES (?, 'pump', ?, ?, ?, ?, 'active', ?, ?, ?, ?)
                    """, arguments: [device, codeName, codeRaw, priorityName, priorityRaw, detail, alarmID, onsetTimeMs, nowMs])
                ref = lastInsertedRowID
                state = .active
            }
        } else if let open {
            ref = open.id
            state = .ended
            try execute(sql: "UPDATE alarm SET state = 'ended', cleared_at_ms = ?, cleared_device_alarm_id = ? WHERE id = ?",
                        arguments: [nowMs, alarmID, ref])
        } else {
            // A clear whose raise the bridge never saw (it happened before this journal existed):
            // kept, as an alarm that is already over, rather than dropped.
            try execute(sql: """
                INSERT INTO alarm (device, source, code, code_raw, priority, priority_raw, state, detail,
                                   cleared_device_alarm_id, onset_time_ms, raised_at_ms, cleared_at_ms)
                VALUES (?, 'pump', ?, ?, ?, ?, 'ended', ?, ?, ?, ?, ?)
                """, arguments: [device, codeName, codeRaw, priorityName, priorityRaw, detail, alarmID, onsetTimeMs, nowMs, nowMs])
            ref = lastInsertedRowID
            state = .ended
        }
        try execute(sql: """
            INSERT INTO alarm_message (device, alarm_id, code_raw, transition, received_ms, alarm_ref) VALUES (?, ?, ?, ?, ?, ?)
            """, arguments: [device, alarmID, codeRaw, raised ? "raised" : (transitionRaw == 2 ? "cleared" : "unknown"), nowMs, ref])
        return .stored(try recordTransition(alarm: ref, state: state, nowMs: nowMs, byUID: nil), event: try lastEvent())
    }

    /// Raises (or keeps) a bridge alarm of `code` for `device`; nil when it is already open.
    func raiseBridgeAlarm(device: String, code: String, priority: String, detail: String, nowMs: Int64) throws -> (AlarmRecord, StoredEvent)? {
        if try AlarmRecord.fetchOpen(self, device: device, source: "bridge", code: code, codeRaw: nil) != nil { return nil }
        try execute(sql: """
            INSERT INTO alarm (device, source, code, priority, state, detail, raised_at_ms) VALUES (?, 'bridge', ?, ?, 'active', ?, ?)
            """, arguments: [device, code, priority, detail, nowMs])
        let record = try recordTransition(alarm: lastInsertedRowID, state: .active, nowMs: nowMs, byUID: nil)
        return (record, try lastEvent())
    }

    /// Ends an open bridge alarm of `code` for `device`; nil when none is open.
    func endBridgeAlarm(device: String, code: String, nowMs: Int64) throws -> (AlarmRecord, StoredEvent)? {
        guard let open = try AlarmRecord.fetchOpen(self, device: device, source: "bridge", code: code, codeRaw: nil) else { return nil }
        try execute(sql: "UPDATE alarm SET state = 'ended', cleared_at_ms = ? WHERE id = ?", arguments: [nowMs, open.id])
        let record = try recordTransition(alarm: open.id, state: .ended, nowMs: nowMs, byUID: nil)
        return (record, try lastEvent())
    }

    /// Acknowledges an alarm on behalf of `uid`. Changes nothing on any pump.
    func acknowledgeAlarm(id: Int64, uid: Int64, nowMs: Int64) throws -> AcknowledgeOutcome {
        guard let alarm = try AlarmRecord.fetch(self, id: id) else { return .notFound }
        switch alarm.state {
        case .ended: return .alreadyEnded(alarm)
        case .acknowledged: return .alreadyAcknowledged(alarm)
        case .active:
            try execute(sql: "UPDATE alarm SET state = 'acknowledged', acknowledged_at_ms = ?, acknowledged_by_uid = ? WHERE id = ?",
                        arguments: [nowMs, uid, id])
            let record = try recordTransition(alarm: id, state: .acknowledged, nowMs: nowMs, byUID: uid)
            return .acknowledged(record, event: try lastEvent())
        }
    }

    /// Inserts the `alarm` event for the alarm's current row and the transition that caused it.
    private func recordTransition(alarm id: Int64, state: AlarmRecord.State, nowMs: Int64, byUID: Int64?) throws -> AlarmRecord {
        guard var record = try AlarmRecord.fetch(self, id: id) else { throw DatabaseError(message: "alarm \(id) vanished inside its transaction") }
        // The event id is known only after the insert: insert, then render the final row into it.
        let eventID = try insertEvent(timeMs: nowMs, device: record.device, type: "alarm", data: "{}")
        record.eventID = eventID
        try execute(sql: "UPDATE alarm SET event_id = ? WHERE id = ?", arguments: [eventID, id])
        try execute(sql: "UPDATE event SET data = ? WHERE id = ?", arguments: [record.jsonString, eventID])
        try execute(sql: "INSERT INTO alarm_transition (alarm_ref, state, at_ms, by_uid, event_id) VALUES (?, ?, ?, ?, ?)",
                    arguments: [id, state.rawValue, nowMs, byUID, eventID])
        return record
    }

    private func lastEvent() throws -> StoredEvent {
        guard let row = try Row.fetchOne(self, sql: "SELECT id, time_ms, device, type, data FROM event ORDER BY id DESC LIMIT 1") else {
            throw DatabaseError(message: "event vanished inside its transaction")
        }
        return StoredEvent(row: row)
    }
}

/// What acknowledging did.
public enum AcknowledgeOutcome: Hashable, Sendable {
    /// Recorded now.
    case acknowledged(AlarmRecord, event: StoredEvent)
    /// Someone acknowledged it before: nothing changed.
    case alreadyAcknowledged(AlarmRecord)
    /// The condition has ended: there is nothing to acknowledge.
    case alreadyEnded(AlarmRecord)
    /// No alarm has this id.
    case notFound
}
