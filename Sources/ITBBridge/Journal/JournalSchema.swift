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
        return migrator
    }
}
