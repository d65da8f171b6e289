/// The kinds of event the API publishes (the SSE `event:` name and the journal's `type`).
public enum EventType: String, Hashable, Sendable, CaseIterable {
    /// A programmer's identity, link and pump session changed.
    case device
    /// A `PUMP_STATUS` snapshot (downsampled: on change, or once a minute).
    case status
    /// A `RESERVOIR` snapshot with the derived values (downsampled like `status`).
    case reservoir
    /// An alarm changed state (raised, acknowledged, ended), pump's or bridge's.
    case alarm
    /// A dose program was received or changed.
    case program
    /// A refill was recorded.
    case refill
}

/// Who raised an alarm.
public enum AlarmSource: String, Hashable, Sendable {
    /// The pump, through an `ALARM` message.
    case pump
    /// The bridge itself (``BridgeAlarmCode``).
    case bridge
}

/// The bridge's own alarms: conditions the daemon detects, stored and published like the pump's.
public enum BridgeAlarmCode: String, Hashable, Sendable, CaseIterable {
    /// The programmer's link went down.
    case linkLost = "link_lost"
    /// A connected programmer has been silent for longer than the stale timeout.
    case dataStale = "data_stale"
    /// The refill is due within `refill_due_soon_days`.
    case refillDueSoon = "refill_due_soon"
    /// The refill due date has passed (the next step after `refill_due_soon`, at higher priority).
    case refillOverdue = "refill_overdue"
    /// The drug's stability limit is near.
    case stabilityLimitNear = "stability_limit_near"
    /// The last refill's discrepancy is beyond the configured bound.
    case refillDiscrepancy = "refill_discrepancy"
    /// The device clock is off by more than the configured bound.
    case clockDrift = "clock_drift"
    /// A programmer sent an `alarm_id` the journal already holds with different content (a reset
    /// or repaired programmer, a simulator restarted on the same journal). The new alarm is
    /// stored as new; this alarm says that it happened. It is never ended by the bridge.
    case alarmIDReused = "alarm_id_reused"
    /// The pump's `active_alarm_mask` (its own word on which alarm codes are active) has
    /// disagreed with the pump's open alarms in the journal for longer than `alarm_mask_grace_s`:
    /// an alarm the bridge never received, or one it holds open that the pump has cleared.
    case alarmMaskMismatch = "alarm_mask_mismatch"

    /// The codes raised and ended from the device's current values on every batch
    /// (``BridgeRules``); the others follow link events or journal findings.
    public static let derivedFromValues: Set<BridgeAlarmCode> = [.refillDueSoon, .refillOverdue, .stabilityLimitNear, .refillDiscrepancy, .clockDrift, .alarmMaskMismatch]
}
