import Foundation
import GRDB
import ITBJSON

/// Attributes the records of a journal written before pumps were recorded (v1, v2) to pumps.
///
/// The stored `device` events carry each programmer's `pump_session` as it was then: a `begin`
/// opens that pump's context on the programmer, an `end`, a begin for another pump or a link that
/// is not connected closes it. Every event of that programmer in between (status, reservoir,
/// program, refill, alarm) is the pump's; the rows behind those events follow. Pumps and their
/// interrogation sessions are created from what the events say. Nothing is deleted or changed
/// beyond the new pump references.
enum JournalMigrationV3 {
    private struct Open {
        var pump: String
        var sessionRow: Int64
    }

    static func attributeExistingRecords(_ db: Database) throws {
        var open: [String: Open] = [:]
        let rows = try Row.fetchCursor(db, sql: "SELECT id, time_ms, device, type, data FROM event ORDER BY id")
        var attributions: [(event: Int64, pump: String)] = []
        while let row = try rows.next() {
            let eventID: Int64 = row["id"]
            let timeMs: Int64 = row["time_ms"]
            let device: String = row["device"]
            let type: String = row["type"]
            if type == "device" {
                let data: String = row["data"]
                guard let object = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any] else { continue }
                let connected = (object["link_state"] as? String).map { $0 == "connected" || $0 == "stale" } ?? true
                let session = object["pump_session"] as? [String: Any]
                var next: (identity: PumpIdentity, session: [String: Any])?
                if connected, let session, session["event"] as? String == "begin",
                   let code = (session["manufacturer_code"] as? NSNumber)?.uint16Value, let serial = session["pump_serial"] as? String {
                    next = (PumpIdentity(manufacturerCode: code, serial: serial), session)
                }
                if let current = open[device], current.pump != next?.identity.id {
                    let cause = next != nil ? "another_pump" : (connected ? "ended" : "link_lost")
                    try db.execute(sql: "UPDATE pump_session SET ended_ms = ?, end_cause = ? WHERE id = ?", arguments: [timeMs, cause, current.sessionRow])
                    open[device] = nil
                }
                if let next, open[device] == nil {
                    try upsertPump(db, next.identity, next.session, programmer: device, atMs: timeMs)
                    try db.execute(sql: "INSERT INTO pump_session (pump, programmer, began_ms) VALUES (?, ?, ?)",
                                   arguments: [next.identity.id, device, timeMs])
                    open[device] = Open(pump: next.identity.id, sessionRow: db.lastInsertedRowID)
                }
            } else if let current = open[device] {
                attributions.append((eventID, current.pump))
            }
        }
        for (eventID, pump) in attributions {
            try db.execute(sql: "UPDATE event SET pump = ? WHERE id = ?", arguments: [pump, eventID])
        }
        // The rows behind the events.
        try db.execute(sql: "UPDATE refill SET pump = (SELECT pump FROM event WHERE event.id = refill.event_id)")
        try db.execute(sql: "UPDATE dose_program SET pump = (SELECT pump FROM event WHERE event.id = dose_program.event_id)")
        try db.execute(sql: """
            UPDATE alarm SET pump = (SELECT e.pump FROM alarm_transition t JOIN event e ON e.id = t.event_id
                                     WHERE t.alarm_ref = alarm.id ORDER BY t.id LIMIT 1)
            """)
        try db.execute(sql: """
            UPDATE history SET pump = (SELECT e.pump FROM event e WHERE e.device = history.device AND e.type = history.kind
                                       AND e.time_ms = history.received_ms ORDER BY e.id LIMIT 1)
            """)
        // Each pump's latest values, from its newest events.
        for kind in ["status", "reservoir", "program"] {
            try db.execute(sql: """
                UPDATE pump SET \(kind) = (SELECT data FROM event WHERE event.pump = pump.id AND event.type = ? ORDER BY id DESC LIMIT 1),
                                \(kind)_ms = (SELECT time_ms FROM event WHERE event.pump = pump.id AND event.type = ? ORDER BY id DESC LIMIT 1)
                """, arguments: [kind, kind])
        }
        try db.execute(sql: """
            UPDATE pump SET last_seen_ms = MAX(last_seen_ms, COALESCE((SELECT MAX(time_ms) FROM event WHERE event.pump = pump.id), 0))
            """)
    }

    private static func upsertPump(_ db: Database, _ identity: PumpIdentity, _ session: [String: Any], programmer: String, atMs: Int64) throws {
        let capacity = (session["reservoir_capacity_ul"] as? NSNumber)?.int64Value ?? 0
        let model = session["pump_model"] as? String ?? ""
        let battery = session["battery_state"] as? String ?? "unknown"
        let batteryRaw = (session["battery_state_raw"] as? NSNumber)?.intValue
        let implant = (session["implant_date"] as? String).flatMap(RFC3339.parse)
        let eri = (session["eri_date"] as? String).flatMap(RFC3339.parse)
        try db.execute(sql: """
            INSERT INTO pump (id, manufacturer_code, pump_serial, pump_model, reservoir_capacity_ul, implant_date_ms, battery_state,
                              battery_state_raw, eri_date_ms, first_seen_ms, last_seen_ms, last_programmer)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET pump_model = excluded.pump_model, reservoir_capacity_ul = excluded.reservoir_capacity_ul,
                implant_date_ms = excluded.implant_date_ms, battery_state = excluded.battery_state, battery_state_raw = excluded.battery_state_raw,
                eri_date_ms = excluded.eri_date_ms, last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms), last_programmer = excluded.last_programmer
            """, arguments: [identity.id, Int(identity.manufacturerCode), identity.serial, model, capacity, implant, battery, batteryRaw, eri,
                             atMs, atMs, programmer])
    }
}
