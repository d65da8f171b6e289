public import ITBProtocol
public import ITBSerial

/// A value as the bridge received it: when it arrived (host clock), the device's own timestamp
/// when the message has one, and the clock offset between them (host − device).
public struct Stamped<Value: Sendable & Hashable>: Sendable, Hashable {
    /// The value.
    public var value: Value
    /// Host time of arrival, ms since the epoch.
    public var receivedAtMs: Int64
    /// The device's timestamp, when the message carries a usable one: 0 on the wire is absent,
    /// and a value outside years 0001–9999 is not a time (``TimeArithmetic/deviceTime(_:)``); the
    /// raw value stays in `value`.
    public var deviceTimeMs: Int64?

    /// Stamps `value`; `deviceTimeMs` is the raw wire field, kept only when it is a usable time.
    public init(value: Value, receivedAtMs: Int64, deviceTimeMs raw: Int64?) {
        self.value = value
        self.receivedAtMs = receivedAtMs
        self.deviceTimeMs = raw.flatMap(TimeArithmetic.deviceTime)
    }

    /// host − device, ms; nil without a usable device timestamp.
    public var clockOffsetMs: Int64? { deviceTimeMs.flatMap { TimeArithmetic.difference(receivedAtMs, $0) } }
}

/// Everything the bridge knows about one programmer (and the pump it is interrogating).
public struct DeviceState: Sendable, Hashable {
    /// The programmer serial: the device's id in the API.
    public var id: String
    /// The path its link follows.
    public var path: String
    /// The link's state.
    public var link: LinkStateMachine.PublishedState = .searching
    /// When the link entered that state (host ms).
    public var linkSinceMs: Int64
    /// True when connected but silent for longer than the stale timeout.
    public var stale = false
    /// Last frame received (host ms).
    public var lastSeenMs: Int64?
    /// The decoder's counters for this device's current link.
    public var counters = DecoderCounters()
    /// Boot id changes seen (programmer restarts).
    public var bootChanges = 0
    /// Latest of each message kind.
    public var programmerInfo: Stamped<ProgrammerInfo>?
    public var heartbeat: Stamped<Heartbeat>?
    public var pumpSession: Stamped<PumpSession>?
    /// The pump being interrogated now; nil outside a pump session. The status, reservoir,
    /// program and refill below belong to it (or, when nil, to no pump): they are cleared when the
    /// context closes, so a programmer view never shows a previous pump's values.
    public var pump: PumpContext?
    public var status: Stamped<PumpStatus>?
    public var reservoir: Stamped<Reservoir>?
    public var program: Stamped<DoseProgram>?
    public var lastRefill: Stamped<Refill>?

    /// The clock offset from the most recent timestamped message.
    public var clockOffsetMs: Int64? {
        [status?.clockOffsetMs.map { (status!.receivedAtMs, $0) }, reservoir?.clockOffsetMs.map { (reservoir!.receivedAtMs, $0) }]
            .compactMap { $0 }.max { $0.0 < $1.0 }?.1
    }

    /// Creates the state of a newly identified programmer.
    public init(id: String, path: String, nowMs: Int64) {
        self.id = id
        self.path = path
        self.linkSinceMs = nowMs
    }

    /// The link state as the API names it: `connected`, `stale`, `searching`, `disconnected`,
    /// `busy`, `unavailable`.
    public var linkStateName: String {
        switch link {
        case .connected: stale ? "stale" : "connected"
        case .searching: "searching"
        case .disconnected: "disconnected"
        case .busy: "busy"
        case .unavailable: "unavailable"
        }
    }

    /// The derived values, when a reservoir reading exists.
    public func derived(_ configuration: BridgeConfiguration) -> DerivedValues? {
        guard let reservoir else { return nil }
        return DerivedValues.compute(
            reservoir: reservoir.value, status: status?.value, program: program?.value,
            clockOffsetMs: reservoir.clockOffsetMs ?? 0, configuration: configuration)
    }
}
