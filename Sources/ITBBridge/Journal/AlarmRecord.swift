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
    /// The pump (``PumpIdentity/id``) in session when the alarm was raised; nil outside a session.
    public var pump: String?
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
    /// The user name that uid had when it acknowledged (nil when the uid had no account).
    public var acknowledgedByUser: String?
    /// The note given with the acknowledgement ("called patient"), if any.
    public var acknowledgementNote: String?
    /// The event id of its last change.
    public var eventID: Int64
    /// Every `ALARM` message (raise and clear) stored for this condition, by the device's
    /// `alarm_id`, in the order they arrived.
    public var deviceAlarmIDs: [Int64]

    init(row: Row) {
        id = row["id"]
        device = row["device"]
        pump = row["pump"]
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
        acknowledgedByUser = row["acknowledged_by_user"]
        acknowledgementNote = row["acknowledgement_note"]
        eventID = row["event_id"]
        let ids: String = row["device_alarm_ids"] ?? ""
        deviceAlarmIDs = ids.split(separator: ",").compactMap { Int64($0) }
    }

    /// Writes the alarm as the API's JSON object.
    public func writeJSON(into json: inout JSONWriter) {
        json.beginObject()
        json.key("id"); json.int(id)
        json.key("device"); json.protocolText(device)
        json.key("pump"); if let pump { json.string(pump) } else { json.null() }
        json.key("source"); json.string(source)
        json.key("code"); json.string(code)
        json.key("code_raw"); if let codeRaw { json.int(codeRaw) } else { json.null() }
        json.key("priority"); json.string(priority)
        if let priorityRaw { json.key("priority_raw"); json.int(priorityRaw) }
        json.key("state"); json.string(state.rawValue)
        json.key("detail"); json.protocolText(detail)
        json.key("device_alarm_id"); if let deviceAlarmID { json.int(deviceAlarmID) } else { json.null() }
        json.key("cleared_device_alarm_id"); if let clearedDeviceAlarmID { json.int(clearedDeviceAlarmID) } else { json.null() }
        json.key("device_alarm_ids")
        json.beginArray()
        for alarmID in deviceAlarmIDs { json.int(alarmID) }
        json.endArray()
        if let onsetTimeMs { json.timeField("onset_time", ms: onsetTimeMs, absentWhenZero: false) } else { json.key("onset_time"); json.null() }
        json.key("raised_at"); json.time(ms: raisedAtMs)
        json.key("cleared_at"); if let clearedAtMs { json.time(ms: clearedAtMs) } else { json.null() }
        json.key("acknowledged_at"); if let acknowledgedAtMs { json.time(ms: acknowledgedAtMs) } else { json.null() }
        json.key("acknowledged_by_uid"); if let acknowledgedByUID { json.int(acknowledgedByUID) } else { json.null() }
        json.key("acknowledged_by_user"); if let acknowledgedByUser { json.string(acknowledgedByUser) } else { json.null() }
        json.key("acknowledgement_note"); if let acknowledgementNote { json.string(acknowledgementNote) } else { json.null() }
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

    /// The open (not ended) alarm of this device, source and code, if any; for a pump alarm, of
    /// this pump too (nil: outside any session), so that a pump's alarm never joins another's.
    static func fetchOpen(_ db: Database, device: String, source: String, code: String, codeRaw: Int?, pump: String? = nil) throws -> AlarmRecord? {
        if let codeRaw {
            return try Row.fetchOne(db, sql: """
                SELECT * FROM alarm WHERE device = ? AND source = ? AND code_raw = ? AND pump IS ? AND state != 'ended' ORDER BY id DESC LIMIT 1
                """, arguments: [device, source, codeRaw, pump]).map(AlarmRecord.init(row:))
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
    /// Already stored earlier (a retransmission: same `alarm_id`, same content): acknowledge
    /// again, publish nothing.
    case duplicate
}

extension Database {
    /// Stores one `ALARM` transition from a pump and updates the alarm condition it belongs to.
    /// Runs inside the caller's transaction.
    ///
    /// - The same (device, `alarm_id`) with the same content is a retransmission: nothing changes.
    /// - The same `alarm_id` with other content is a reused id (a reset or repaired programmer):
    ///   stored as a new message, and the bridge alarm `alarm_id_reused` says so.
    /// - The device's `alarm_id` order says which transition came first (PROTOCOL.md §2.4), so a
    ///   clear that arrives before its raise (retransmission order after a restart) still ends
    ///   that raise: the raise joins the condition whose clear has a higher id.
    /// - A raise of a code that is already active joins that condition.
    ///
    /// Every message stored is listed in its alarm's `device_alarm_ids`.
    func storePumpAlarm(_ a: JournalOp.PumpAlarm, nowMs: Int64) throws -> JournalOpResult {
        let earlier = try Row.fetchAll(self, sql: "SELECT code_raw, transition, content FROM alarm_message WHERE device = ? AND alarm_id = ?",
                                       arguments: [a.device, a.alarmID])
        let retransmission = earlier.contains { row in
            if let content: String = row["content"] { return content == a.content }
            // Stored before contents were kept: the code and the transition are what is known.
            return row["code_raw"] == a.codeRaw && row["transition"] == a.transitionName
        }
        if retransmission { return JournalOpResult(alarmOutcome: .duplicate) }
        let reused = !earlier.isEmpty
        // After a reuse the id's order says nothing about what came first.
        let ordered = !reused

        let ref: Int64
        var state: AlarmRecord.State?
        if a.raised {
            if ordered, let covering = try Row.fetchOne(self, sql: """
                SELECT id, device_alarm_id FROM alarm
                WHERE device = ? AND source = 'pump' AND code_raw = ? AND pump IS ? AND state = 'ended'
                  AND cleared_device_alarm_id > ? AND (device_alarm_id IS NULL OR device_alarm_id <= ?)
                ORDER BY cleared_device_alarm_id LIMIT 1
                """, arguments: [a.device, a.codeRaw, a.pump, a.alarmID, a.alarmID]) {
                // Its clear (a higher id) arrived first: the raise belongs to that ended condition.
                ref = covering["id"]
                let raiseID: Int64? = covering["device_alarm_id"]
                if raiseID == nil {
                    try execute(sql: "UPDATE alarm SET device_alarm_id = ?, onset_time_ms = COALESCE(?, onset_time_ms), detail = ? WHERE id = ?",
                                arguments: [a.alarmID, a.onsetTimeMs, a.detail, ref])
                }
            } else if let open = try AlarmRecord.fetchOpen(self, device: a.device, source: "pump", code: a.codeName, codeRaw: a.codeRaw, pump: a.pump) {
                // Raised again while still open: one condition, with the newest detail.
                ref = open.id
                try execute(sql: "UPDATE alarm SET detail = ? WHERE id = ?", arguments: [a.detail, ref])
            } else {
                try execute(sql: """
                    INSERT INTO alarm (device, pump, source, code, code_raw, priority, priority_raw, state, detail,
                                       device_alarm_id, onset_time_ms, raised_at_ms)
                    VALUES (?, ?, 'pump', ?, ?, ?, ?, 'active', ?, ?, ?, ?)
                    """, arguments: [a.device, a.pump, a.codeName, a.codeRaw, a.priorityName, a.priorityRaw, a.detail, a.alarmID, a.onsetTimeMs, nowMs])
                ref = lastInsertedRowID
                state = .active
            }
        } else if let open = try AlarmRecord.fetchOpen(self, device: a.device, source: "pump", code: a.codeName, codeRaw: a.codeRaw, pump: a.pump),
                  !ordered || (open.deviceAlarmID ?? .min) < a.alarmID {
            ref = open.id
            state = .ended
            try execute(sql: "UPDATE alarm SET state = 'ended', cleared_at_ms = ?, cleared_device_alarm_id = ? WHERE id = ?",
                        arguments: [nowMs, a.alarmID, ref])
        } else {
            // A clear whose raise the bridge has not seen (before this journal existed, or not
            // yet arrived): kept, as an alarm that is already over, rather than dropped; a raise
            // with a lower id that arrives later joins it.
            try execute(sql: """
                INSERT INTO alarm (device, pump, source, code, code_raw, priority, priority_raw, state, detail,
                                   cleared_device_alarm_id, onset_time_ms, raised_at_ms, cleared_at_ms)
                VALUES (?, ?, 'pump', ?, ?, ?, ?, 'ended', ?, ?, ?, ?, ?)
                """, arguments: [a.device, a.pump, a.codeName, a.codeRaw, a.priorityName, a.priorityRaw, a.detail, a.alarmID, a.onsetTimeMs, nowMs, nowMs])
            ref = lastInsertedRowID
            state = .ended
        }
        try execute(sql: """
            INSERT INTO alarm_message (device, alarm_id, code_raw, transition, content, received_ms, alarm_ref) VALUES (?, ?, ?, ?, ?, ?, ?)
            """, arguments: [a.device, a.alarmID, a.codeRaw, a.transitionName, a.content, nowMs, ref])
        try execute(sql: """
            UPDATE alarm SET device_alarm_ids = CASE device_alarm_ids WHEN '' THEN ? ELSE device_alarm_ids || ',' || ? END WHERE id = ?
            """, arguments: [String(a.alarmID), String(a.alarmID), ref])
        let (record, event) = try recordChange(alarm: ref, transition: state, nowMs: nowMs, byUID: nil)
        var result = JournalOpResult(events: [event], alarms: [record], alarmOutcome: .stored(record, event: event))
        if reused {
            let detail = "programmer \(a.device) sent alarm_id \(a.alarmID) again with other content (now \(a.codeName) \(a.transitionName)): stored as a new alarm (bridge alarm \(record.id)); the programmer may have been reset or repaired"
            if let (bridge, bridgeEvent) = try raiseBridgeAlarm(device: a.device, pump: a.pump, code: .alarmIDReused, priority: "medium", detail: detail,
                                                                  nowMs: nowMs, updatingOpen: true) {
                result.events.append(bridgeEvent)
                result.alarms.append(bridge)
            }
        }
        return result
    }

    /// Raises a bridge alarm of `code` for `device`; nil when it is already open (or, with
    /// `updatingOpen`, the open one with the new detail, published again without a transition).
    func raiseBridgeAlarm(device: String, pump: String? = nil, code: BridgeAlarmCode, priority: String, detail: String, nowMs: Int64,
                          updatingOpen: Bool = false) throws -> (AlarmRecord, StoredEvent)? {
        if let open = try AlarmRecord.fetchOpen(self, device: device, source: "bridge", code: code.rawValue, codeRaw: nil) {
            guard updatingOpen else { return nil }
            try execute(sql: "UPDATE alarm SET detail = ? WHERE id = ?", arguments: [detail, open.id])
            return try recordChange(alarm: open.id, transition: nil, nowMs: nowMs, byUID: nil)
        }
        try execute(sql: """
            INSERT INTO alarm (device, pump, source, code, priority, state, detail, raised_at_ms) VALUES (?, ?, 'bridge', ?, ?, 'active', ?, ?)
            """, arguments: [device, pump, code.rawValue, priority, detail, nowMs])
        return try recordChange(alarm: lastInsertedRowID, transition: .active, nowMs: nowMs, byUID: nil)
    }

    /// Ends an open bridge alarm of `code` for `device`; nil when none is open.
    func endBridgeAlarm(device: String, code: BridgeAlarmCode, nowMs: Int64) throws -> (AlarmRecord, StoredEvent)? {
        guard let open = try AlarmRecord.fetchOpen(self, device: device, source: "bridge", code: code.rawValue, codeRaw: nil) else { return nil }
        try execute(sql: "UPDATE alarm SET state = 'ended', cleared_at_ms = ? WHERE id = ?", arguments: [nowMs, open.id])
        return try recordChange(alarm: open.id, transition: .ended, nowMs: nowMs, byUID: nil)
    }

    /// Acknowledges an alarm on behalf of `uid`, whose user name at this moment was `userName`,
    /// with an optional `note`. Changes nothing on any pump.
    func acknowledgeAlarm(id: Int64, uid: Int64, userName: String? = nil, note: String? = nil, nowMs: Int64) throws -> AcknowledgeOutcome {
        guard let alarm = try AlarmRecord.fetch(self, id: id) else { return .notFound }
        switch alarm.state {
        case .ended: return .alreadyEnded(alarm)
        case .acknowledged: return .alreadyAcknowledged(alarm)
        case .active:
            try execute(sql: """
                UPDATE alarm SET state = 'acknowledged', acknowledged_at_ms = ?, acknowledged_by_uid = ?,
                                 acknowledged_by_user = ?, acknowledgement_note = ? WHERE id = ?
                """, arguments: [nowMs, uid, userName, note, id])
            let (record, event) = try recordChange(alarm: id, transition: .acknowledged, nowMs: nowMs, byUID: uid)
            return .acknowledged(record, event: event)
        }
    }

    /// Inserts the `alarm` event for the alarm's current row and, when its state changed, the
    /// transition that caused it. Returns the record as published and its event.
    private func recordChange(alarm id: Int64, transition: AlarmRecord.State?, nowMs: Int64, byUID: Int64?) throws -> (AlarmRecord, StoredEvent) {
        guard var record = try AlarmRecord.fetch(self, id: id) else { throw DatabaseError(message: "alarm \(id) vanished inside its transaction") }
        // The event id is known only after the insert: insert, then render the final row into it.
        let eventID = try insertEvent(timeMs: nowMs, device: record.device, pump: record.pump, type: EventType.alarm.rawValue, data: "{}")
        record.eventID = eventID
        let data = record.jsonString
        try execute(sql: "UPDATE alarm SET event_id = ? WHERE id = ?", arguments: [eventID, id])
        try execute(sql: "UPDATE event SET data = ? WHERE id = ?", arguments: [data, eventID])
        if let transition {
            try execute(sql: "INSERT INTO alarm_transition (alarm_ref, state, at_ms, by_uid, event_id) VALUES (?, ?, ?, ?, ?)",
                        arguments: [id, transition.rawValue, nowMs, byUID, eventID])
        }
        return (record, StoredEvent(id: eventID, timeMs: nowMs, device: record.device, pump: record.pump, type: EventType.alarm.rawValue, data: data))
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
