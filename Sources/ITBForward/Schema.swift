/// The PostgreSQL schema itb-forward writes into, as numbered migrations. Each forwarder applies
/// the ones a database lacks when it starts, in one transaction under an advisory lock (so five
/// forwarders starting at once migrate once), and records each in `itb_schema_version`.
///
/// Migrations are only ever appended: a released one is never edited, since databases out there
/// already ran it. README.md ("Clinic-wide view") documents the tables and views.
public enum Schema {
    /// One migration: its version (1, 2, …), what it does, and its statements in order.
    public struct Migration: Sendable {
        /// The version the database has once this migration ran.
        public var version: Int
        /// One line for `itb_schema_version.description`.
        public var description: String
        /// The SQL statements, run one after another in the migration's transaction.
        public var statements: [String]
    }

    /// The key of the transaction-level advisory lock that serialises migrations
    /// (`pg_advisory_xact_lock`): the ASCII of "ITBFWD" as a number.
    public static let migrationLockKey: Int64 = 0x4954_4246_5744

    /// Every migration, in order.
    public static let migrations: [Migration] = [version1]

    /// The version a database has after every migration ran.
    public static var currentVersion: Int { migrations.last?.version ?? 0 }

    /// Creates the schema's bookkeeping table; run before reading the version.
    static let createVersionTable = """
        CREATE TABLE IF NOT EXISTS itb_schema_version (
            version integer PRIMARY KEY,
            description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """

    /// Version 1: the events, the forwarders' positions, and the pump-centric views.
    static let version1 = Migration(version: 1, description: "itb_event, itb_forward_position, pump-centric views", statements: [
        // Every journal event of every bridge, once: (bridge_id, event_id) is the bridge's own
        // journal id. `time`, `programmer` and `pump` are taken from `data` on insert
        // (itb_event_time) so that reports can index and filter them.
        """
        CREATE TABLE itb_event (
            bridge_id text NOT NULL,
            event_id bigint NOT NULL,
            time timestamptz,
            programmer text,
            pump text,
            type text NOT NULL,
            data jsonb NOT NULL,
            PRIMARY KEY (bridge_id, event_id)
        )
        """,
        "CREATE INDEX itb_event_pump_type_idx ON itb_event (pump, type) WHERE pump IS NOT NULL",
        "CREATE INDEX itb_event_type_idx ON itb_event (type)",
        "CREATE INDEX itb_event_time_idx ON itb_event (time)",
        // Where each bridge's forwarder is: the last journal id written for it, updated in the same
        // transaction as the rows (exactly once).
        """
        CREATE TABLE itb_forward_position (
            bridge_id text PRIMARY KEY,
            last_event_id bigint NOT NULL,
            events_forwarded bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        // When an event happened, in the bridge's clock: `received_at` where the event has one
        // (status, reservoir, program, refill); for an alarm its latest transition; for a
        // programmer (device) event its latest sighting.
        """
        CREATE FUNCTION itb_event_time(data jsonb) RETURNS timestamptz LANGUAGE sql STABLE AS $$
            SELECT COALESCE((data->>'received_at')::timestamptz,
                            GREATEST((data->>'raised_at')::timestamptz, (data->>'acknowledged_at')::timestamptz,
                                     (data->>'cleared_at')::timestamptz, (data->>'last_seen')::timestamptz,
                                     (data->>'link_state_since')::timestamptz, (data->'pump_session'->>'received_at')::timestamptz))
        $$
        """,
        // A pump's id as the bridge writes it: `<manufacturer code>-<serial>`, serial bytes outside
        // A–Z a–z 0–9 - . _ as ~XX (README, "The pump is the record").
        """
        CREATE FUNCTION itb_pump_id(manufacturer_code text, serial text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
            SELECT manufacturer_code || '-' || COALESCE(string_agg(
                CASE WHEN c ~ '^[A-Za-z0-9._-]$' THEN c
                     ELSE regexp_replace(upper(encode(convert_to(c, 'UTF8'), 'hex')), '(..)', '~\\1', 'g') END, '' ORDER BY i), '')
            FROM regexp_split_to_table(serial, '') WITH ORDINALITY AS t(c, i)
        $$
        """,
        // Every alarm transition as each bridge journaled it. An alarm is (bridge_id, alarm_id):
        // the same pump's alarm raised at two workstations stays two alarms.
        """
        CREATE VIEW alarm_transitions AS
        SELECT bridge_id, (data->>'id')::bigint AS alarm_id, event_id, time, data->>'state' AS state,
               programmer, pump, data->>'source' AS source, data->>'code' AS code, data->>'priority' AS priority,
               data->>'detail' AS detail, (data->>'acknowledged_at')::timestamptz AS acknowledged_at,
               (data->>'acknowledged_by_uid')::bigint AS acknowledged_by_uid, data
        FROM itb_event WHERE type = 'alarm'
        """,
        // Each alarm as it is now: its latest transition.
        """
        CREATE VIEW alarms AS
        SELECT DISTINCT ON (bridge_id, alarm_id)
               bridge_id, alarm_id, programmer, pump, source, code, priority, state, detail,
               (data->>'raised_at')::timestamptz AS raised_at, acknowledged_at, acknowledged_by_uid,
               (data->>'cleared_at')::timestamptz AS cleared_at, event_id AS last_event_id, data
        FROM alarm_transitions
        ORDER BY bridge_id, alarm_id, event_id DESC
        """,
        """
        CREATE VIEW refills AS
        SELECT bridge_id, event_id, pump, programmer, (data->>'refill_time')::timestamptz AS refill_time,
               (data->>'received_at')::timestamptz AS received_at, (data->>'concentration_ug_per_ml')::bigint AS concentration_ug_per_ml,
               (data->>'volume_filled_ul')::bigint AS volume_filled_ul, (data->>'expected_residual_ul')::bigint AS expected_residual_ul,
               (data->>'measured_residual_ul')::bigint AS measured_residual_ul, data->>'drug_lot' AS drug_lot,
               (data->>'discrepancy')::double precision AS discrepancy, (data->>'discrepancy_flagged')::boolean AS discrepancy_flagged, data
        FROM itb_event WHERE type = 'refill'
        """,
        """
        CREATE VIEW dose_programs AS
        SELECT bridge_id, event_id, pump, programmer, (data->>'device_time')::timestamptz AS device_time,
               (data->>'received_at')::timestamptz AS received_at, data->>'mode' AS mode,
               (data->>'daily_dose_ug')::double precision AS daily_dose_ug, data
        FROM itb_event WHERE type = 'program'
        """,
        // One row per pump across all bridges: its identity as its latest PUMP_SESSION begin said
        // (wherever that was), its latest reservoir reading, status and dose program by device
        // time (wherever taken), its active alarms at every bridge, when it was first and last seen.
        """
        CREATE VIEW pumps AS
        WITH begins AS (
            SELECT bridge_id, event_id, data->>'pump' AS pump, data->'pump_session' AS session, data->>'id' AS programmer,
                   (data->'pump_session'->>'received_at')::timestamptz AS at
            FROM itb_event
            WHERE type = 'device' AND data->>'pump' IS NOT NULL AND data->'pump_session'->>'event' = 'begin'
        ), identity AS (
            SELECT DISTINCT ON (pump) * FROM begins ORDER BY pump, at DESC, event_id DESC
        ), seen AS (
            SELECT pump, at FROM begins
            UNION ALL
            SELECT itb_pump_id(data->'pump_session'->>'manufacturer_code', data->'pump_session'->>'pump_serial'),
                   (data->'pump_session'->>'received_at')::timestamptz
            FROM itb_event WHERE type = 'device' AND data->'pump_session'->>'event' = 'end'
            UNION ALL
            SELECT pump, (data->>'received_at')::timestamptz FROM itb_event
            WHERE type IN ('status', 'reservoir', 'program') AND pump IS NOT NULL
        ), seen_span AS (
            SELECT pump, min(at) AS first_seen, max(at) AS last_seen FROM seen GROUP BY pump
        ), first_begin AS (
            SELECT pump, min(at) AS first_seen FROM begins GROUP BY pump
        ), reading AS (
            SELECT DISTINCT ON (pump) pump, bridge_id, data FROM itb_event
            WHERE type = 'reservoir' AND pump IS NOT NULL
            ORDER BY pump, (data->>'device_time')::timestamptz DESC NULLS LAST, time DESC, bridge_id, event_id DESC
        ), status AS (
            SELECT DISTINCT ON (pump) pump, data FROM itb_event
            WHERE type = 'status' AND pump IS NOT NULL
            ORDER BY pump, (data->>'device_time')::timestamptz DESC NULLS LAST, time DESC, bridge_id, event_id DESC
        ), program AS (
            SELECT DISTINCT ON (pump) pump, data FROM itb_event
            WHERE type = 'program' AND pump IS NOT NULL
            ORDER BY pump, (data->>'device_time')::timestamptz DESC NULLS LAST, time DESC, bridge_id, event_id DESC
        ), active AS (
            SELECT pump, count(*) AS active_alarms FROM alarms WHERE state <> 'ended' AND pump IS NOT NULL GROUP BY pump
        )
        SELECT i.pump AS id,
               i.session->>'pump_serial' AS pump_serial,
               (i.session->>'manufacturer_code')::integer AS manufacturer_code,
               i.session->>'pump_model' AS pump_model,
               (i.session->>'reservoir_capacity_ul')::bigint AS reservoir_capacity_ul,
               (i.session->>'implant_date')::timestamptz AS implant_date,
               i.session->>'battery_state' AS battery_state,
               (i.session->>'eri_date')::timestamptz AS eri_date,
               (i.session->>'eri_date')::timestamptz + interval '90 days' AS projected_end_of_service,
               f.first_seen,
               s.last_seen,
               r.data AS reservoir,
               r.bridge_id AS reading_bridge_id,
               r.data->'derived' AS derived,
               (r.data->'derived'->>'refill_due_date')::timestamptz AS refill_due_date,
               (r.data->>'device_time')::timestamptz + ((r.data->>'clock_offset_ms')::bigint * interval '1 millisecond') AS reading_at,
               COALESCE(a.active_alarms, 0) AS active_alarms,
               i.programmer AS last_programmer,
               i.bridge_id AS last_bridge_id,
               st.data AS status,
               p.data AS program
        FROM identity i
        JOIN first_begin f USING (pump)
        JOIN seen_span s USING (pump)
        LEFT JOIN reading r USING (pump)
        LEFT JOIN status st USING (pump)
        LEFT JOIN program p USING (pump)
        LEFT JOIN active a USING (pump)
        """,
        // The clinic-wide refill worklist: per pump what one bridge's GET /v1/pumps gives, due
        // first, with the projected volume now (a projection, not a measurement: the last
        // reading's volume less the flow since, floored at 0, none beyond 400 days).
        """
        CREATE VIEW refill_worklist AS
        SELECT id, pump_serial, manufacturer_code, pump_model, reservoir_capacity_ul, implant_date, battery_state, eri_date,
               projected_end_of_service, first_seen, last_seen, reservoir,
               CASE WHEN reading_at IS NOT NULL AND (derived->>'flow_ul_per_day') IS NOT NULL
                         AND now() >= reading_at AND now() - reading_at <= interval '400 days'
                    THEN round(greatest(0, (reservoir->>'volume_ul')::numeric - (derived->>'flow_ul_per_day')::numeric
                                            * (extract(epoch FROM now() - reading_at) / 86400)), 1)
               END AS projected_volume_ul,
               now() AS projected_at,
               derived, refill_due_date, active_alarms, last_programmer, last_bridge_id, reading_bridge_id
        FROM pumps
        ORDER BY refill_due_date NULLS LAST, id
        """,
    ])
}
