import GRDB

/// The journal's schema, versioned with GRDB migrations. Never edit a shipped migration: add one.
enum JournalSchema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            // Every event the API publishes; its id is the SSE id and the resume point.
            try db.execute(sql: """
                CREATE TABLE event (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    time_ms INTEGER NOT NULL,
                    device TEXT NOT NULL,
                    type TEXT NOT NULL,
                    data TEXT NOT NULL
                );
                CREATE INDEX event_time ON event(time_ms);
                CREATE INDEX event_device ON event(device, id);

                -- Each ALARM message received, once: the key is (programmer serial, alarm id).
                CREATE TABLE alarm_message (
                    device TEXT NOT NULL,
                    alarm_id INTEGER NOT NULL,
                    code_raw INTEGER NOT NULL,
                    transition TEXT NOT NULL,
                    received_ms INTEGER NOT NULL,
                    alarm_ref INTEGER NOT NULL,
                    PRIMARY KEY (device, alarm_id)
                ) WITHOUT ROWID;

                -- An alarm condition from raise to end, pump's or bridge's own.
                CREATE TABLE alarm (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    device TEXT NOT NULL,
                    source TEXT NOT NULL CHECK (source IN ('pump', 'bridge')),
                    code TEXT NOT NULL,
                    code_raw INTEGER,
                    priority TEXT NOT NULL,
                    priority_raw INTEGER,
                    state TEXT NOT NULL CHECK (state IN ('active', 'acknowledged', 'ended')),
                    detail TEXT NOT NULL DEFAULT '',
                    device_alarm_id INTEGER,
                    cleared_device_alarm_id INTEGER,
                    onset_time_ms INTEGER,
                    raised_at_ms INTEGER NOT NULL,
                    cleared_at_ms INTEGER,
                    acknowledged_at_ms INTEGER,
                    acknowledged_by_uid INTEGER,
                    event_id INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX alarm_open ON alarm(device, source, code, state);
                CREATE INDEX alarm_event ON alarm(event_id);

                -- Every state change of an alarm (IHE ACM: active, acknowledged, ended), with who.
                CREATE TABLE alarm_transition (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    alarm_ref INTEGER NOT NULL REFERENCES alarm(id),
                    state TEXT NOT NULL,
                    at_ms INTEGER NOT NULL,
                    by_uid INTEGER,
                    event_id INTEGER NOT NULL
                );
                CREATE INDEX alarm_transition_alarm ON alarm_transition(alarm_ref);

                CREATE TABLE refill (
                    device TEXT NOT NULL,
                    refill_time_ms INTEGER NOT NULL,
                    concentration_ug_per_ml INTEGER NOT NULL,
                    volume_filled_ul INTEGER NOT NULL,
                    expected_residual_ul INTEGER NOT NULL,
                    measured_residual_ul INTEGER NOT NULL,
                    drug_lot TEXT NOT NULL,
                    discrepancy REAL,
                    received_ms INTEGER NOT NULL,
                    event_id INTEGER NOT NULL,
                    PRIMARY KEY (device, refill_time_ms)
                );

                CREATE TABLE dose_program (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    device TEXT NOT NULL,
                    received_ms INTEGER NOT NULL,
                    data TEXT NOT NULL,
                    event_id INTEGER NOT NULL
                );

                CREATE TABLE device_session (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    device TEXT NOT NULL,
                    path TEXT NOT NULL,
                    boot_id TEXT,
                    started_ms INTEGER NOT NULL,
                    ended_ms INTEGER,
                    end_cause TEXT
                );

                -- Downsampled status and reservoir: at most a row a minute per device and kind,
                -- unless a value changes.
                CREATE TABLE history (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    device TEXT NOT NULL,
                    kind TEXT NOT NULL CHECK (kind IN ('status', 'reservoir')),
                    received_ms INTEGER NOT NULL,
                    device_time_ms INTEGER,
                    data TEXT NOT NULL
                );
                CREATE INDEX history_device ON history(device, kind, received_ms);
                """)
        }
        migrator.registerMigration("v2-alarm-messages") { db in
            // A reused alarm_id (a reset programmer) is a new message, so (device, alarm_id) is no
            // longer unique: each message gets its own row and keeps its content, which tells a
            // retransmission (same content) from a reuse. Each alarm lists the device alarm ids
            // of the messages it covers, so every message ACKed `stored` can be found in the API.
            try db.execute(sql: """
                CREATE TABLE alarm_message_v2 (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    device TEXT NOT NULL,
                    alarm_id INTEGER NOT NULL,
                    code_raw INTEGER NOT NULL,
                    transition TEXT NOT NULL,
                    content TEXT,
                    received_ms INTEGER NOT NULL,
                    alarm_ref INTEGER NOT NULL
                );
                INSERT INTO alarm_message_v2 (device, alarm_id, code_raw, transition, content, received_ms, alarm_ref)
                    SELECT device, alarm_id, code_raw, transition, NULL, received_ms, alarm_ref FROM alarm_message ORDER BY received_ms;
                DROP TABLE alarm_message;
                ALTER TABLE alarm_message_v2 RENAME TO alarm_message;
                CREATE INDEX alarm_message_key ON alarm_message(device, alarm_id);
                CREATE INDEX alarm_message_alarm ON alarm_message(alarm_ref);

                ALTER TABLE alarm ADD COLUMN device_alarm_ids TEXT NOT NULL DEFAULT '';
                UPDATE alarm SET device_alarm_ids = COALESCE(
                    (SELECT group_concat(alarm_id, ',') FROM (SELECT alarm_id FROM alarm_message m WHERE m.alarm_ref = alarm.id ORDER BY m.id)),
                    '');
                """)
        }
        migrator.registerMigration("v3-pumps") { db in
            // The record belongs to the pump: pumps, their interrogation sessions, and a pump
            // reference on everything a pump reported. Existing rows are attributed from the
            // stored `device` events, which carry each programmer's pump session.
            try db.execute(sql: """
                CREATE TABLE pump (
                    id TEXT PRIMARY KEY,
                    manufacturer_code INTEGER NOT NULL,
                    pump_serial TEXT NOT NULL,
                    pump_model TEXT NOT NULL,
                    reservoir_capacity_ul INTEGER NOT NULL,
                    implant_date_ms INTEGER,
                    battery_state TEXT NOT NULL,
                    battery_state_raw INTEGER,
                    eri_date_ms INTEGER,
                    first_seen_ms INTEGER NOT NULL,
                    last_seen_ms INTEGER NOT NULL,
                    last_programmer TEXT NOT NULL,
                    -- The latest of each, as its event rendered it.
                    status TEXT, status_ms INTEGER,
                    reservoir TEXT, reservoir_ms INTEGER,
                    program TEXT, program_ms INTEGER,
                    -- From the latest reservoir reading: what the worklist sorts and projects with.
                    volume_ul REAL, flow_ul_per_day REAL, reading_at_ms INTEGER, refill_due_ms INTEGER, derived TEXT
                );
                CREATE INDEX pump_refill_due ON pump(refill_due_ms, id);

                CREATE TABLE pump_session (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    pump TEXT NOT NULL,
                    programmer TEXT NOT NULL,
                    began_ms INTEGER NOT NULL,
                    ended_ms INTEGER,
                    end_cause TEXT
                );
                CREATE INDEX pump_session_pump ON pump_session(pump, id);
                CREATE INDEX pump_session_open ON pump_session(programmer, ended_ms);

                ALTER TABLE event ADD COLUMN pump TEXT;
                CREATE INDEX event_pump ON event(pump, id);
                ALTER TABLE alarm ADD COLUMN pump TEXT;
                CREATE INDEX alarm_pump ON alarm(pump, state);
                ALTER TABLE refill ADD COLUMN pump TEXT;
                ALTER TABLE refill ADD COLUMN capacity_ul INTEGER;
                CREATE INDEX refill_pump ON refill(pump, refill_time_ms);
                ALTER TABLE dose_program ADD COLUMN pump TEXT;
                ALTER TABLE dose_program ADD COLUMN concentration_ug_per_ml INTEGER;
                CREATE INDEX dose_program_pump ON dose_program(pump, id);
                ALTER TABLE history ADD COLUMN pump TEXT;
                CREATE INDEX history_pump ON history(pump, kind, id);
                """)
            try JournalMigrationV3.attributeExistingRecords(db)
        }
        migrator.registerMigration("v4-ack-note") { db in
            // An acknowledgement keeps, besides the uid (the identity, from SO_PEERCRED), the user
            // name that uid had at that moment (accounts are renamed and removed; the record must
            // still say who) and the note the person gave ("called patient"); both optional.
            try db.execute(sql: """
                ALTER TABLE alarm ADD COLUMN acknowledged_by_user TEXT;
                ALTER TABLE alarm ADD COLUMN acknowledgement_note TEXT;
                """)
        }
        return migrator
    }
}
