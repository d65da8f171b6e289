public import ITBSerial

/// Everything the daemon can be told, with the defaults a clinic installation needs.
///
/// Set from a config file (``ConfigurationFile``) and then from command-line flags, which win.
/// Every option is documented in `systemd/itb-bridged.conf`.
public struct BridgeConfiguration: Sendable, Hashable {
    /// Explicit device paths (ttys, ptys, symlinks), followed besides discovery.
    public var devices: [String] = []
    /// Capture files to replay through the pipeline, read-only (nothing is written back).
    public var replayFiles: [String] = []
    /// Whether to discover programmers through udev with ``matchRules``.
    public var discovery: Bool = true
    /// USB ids that identify a programmer's adapter.
    public var matchRules: [USBMatchRule] = [.defaultProgrammerAdapter]
    /// Serial line settings.
    public var serial: SerialConfiguration = .init()
    /// The API socket path.
    public var socketPath: String = "/run/itb-bridge/api.sock"
    /// The socket's file mode (default 0660: owner and group).
    public var socketMode: UInt32 = 0o660
    /// The socket's group (name or number); nil keeps the daemon's own group.
    public var socketGroup: String?
    /// Where the journal lives.
    public var stateDirectory: String = "/var/lib/itb-bridge"
    /// Log level name (trace, debug, info, notice, warning, error, critical).
    public var logLevel: String = "info"
    /// A link with no frame for this long is stale.
    public var staleAfter: Duration = .seconds(5)
    /// How often the host sends `HOST_HEARTBEAT`.
    public var heartbeatInterval: Duration = .seconds(1)
    /// Days before the computed date that a refill is due (clinics refill 3–5 days early).
    public var refillMarginDays: Double = 4
    /// Drug stability limit after a fill, in days.
    public var stabilityLimitDays: Double = 180
    /// Raise `refill_due_soon` this many days before the refill due date.
    public var refillDueSoonDays: Double = 7
    /// Raise `stability_limit_near` this many days before the stability limit.
    public var stabilityWarningDays: Double = 14
    /// Flag a refill whose discrepancy magnitude exceeds this fraction (no published threshold).
    public var refillDiscrepancyBound: Double = 0.10
    /// A refill whose measured residual differs from the expected one by more than this (µL) is
    /// flagged in a pump's refill history, for pumps of 20 mL or less (Maino et al. 2017: > 1 mL).
    public var refillDiscrepancyBoundSmallPumpUL: Int64 = 1_000
    /// The same bound for larger pumps (> 2 mL).
    public var refillDiscrepancyBoundLargePumpUL: Int64 = 2_000
    /// Raise `clock_drift` when the device clock is off the host clock by more than this.
    public var clockDriftBound: Duration = .seconds(300)
    /// How long a pump's `active_alarm_mask` may disagree with its open alarms before the bridge
    /// raises `alarm_mask_mismatch` (an alarm and the status that shows it may cross on the line).
    public var alarmMaskGrace: Duration = .seconds(30)
    /// Journal retention in days.
    public var retentionDays: Int = 400
    /// Events a live subscriber may fall behind, beyond what its socket's buffers hold, before it
    /// is cut off with `lagged`.
    public var subscriberBufferEvents: Int = 4096
    /// Largest request body accepted, bytes.
    public var maxRequestBodyBytes: Int = 16 << 10
    /// Directory for raw captures of device traffic (nil: no recording).
    public var captureDirectory: String?
    /// Rotate a capture file when it reaches this size.
    public var captureRotateBytes: Int = 64 << 20
    /// The bound on all capture files in ``captureDirectory`` together: at each rotation the
    /// oldest are deleted until they fit (0: no bound).
    public var captureMaxTotalBytes: Int = 1 << 30

    /// The defaults.
    public init() {}
}
