import ITBJSON
import ITBProtocol

/// A pump named by a `PUMP_SESSION` on a programmer, as the journal records it (the `pump` row's
/// identity and state, and the interrogation session).
struct PumpSeen: Sendable, Hashable {
    var identity: PumpIdentity
    var session: PumpSession
    /// The programmer serial.
    var programmer: String
    /// Host time (ms).
    var atMs: Int64

    var id: String { identity.id }
}

/// A pump's latest value of one kind, kept on its `pump` row so that its state survives a
/// restart and the worklist is one indexed query.
struct PumpLatest: Sendable, Hashable {
    /// The figures the worklist sorts, filters and projects with, from a reservoir reading.
    struct ReservoirFigures: Sendable, Hashable {
        /// `derived.refill_due_date` (host ms), nil when unknown.
        var refillDueMs: Int64?
        /// The reservoir volume as read, µL.
        var volumeUL: Double
        /// The programmed flow, µL/day; nil without a concentration.
        var flowULPerDay: Double?
        /// When the reading was taken, in host time (device time + clock offset, else arrival).
        var readingAtMs: Int64
        /// The `derived` object as JSON.
        var derived: String?

        init(volumeUL: Double, flowULPerDay: Double?, readingAtMs: Int64, refillDueMs: Int64?, derived: String?) {
            self.volumeUL = volumeUL
            self.flowULPerDay = flowULPerDay
            self.readingAtMs = readingAtMs
            self.refillDueMs = refillDueMs
            self.derived = derived
        }

        /// The figures of `device`'s current reservoir reading.
        init?(_ device: DeviceState, _ configuration: BridgeConfiguration) {
            guard let reservoir = device.reservoir else { return nil }
            let derived = device.derived(configuration)
            self.init(
                volumeUL: Double(reservoir.value.volumeULX10) / 10, flowULPerDay: derived?.flowULPerDay,
                readingAtMs: TimeArithmetic.sum(reservoir.deviceTimeMs, reservoir.clockOffsetMs) ?? reservoir.receivedAtMs,
                refillDueMs: derived?.refillDueDateMs,
                derived: derived.map { d in Rendering.string { Rendering.derivedValues(d, configuration, &$0) } })
        }
    }

    var pump: String
    /// `status`, `reservoir` or `program`.
    var kind: EventType
    /// The rendered value (the same JSON as its event).
    var data: String
    /// Host time (ms).
    var atMs: Int64
    var reservoir: ReservoirFigures?

    init(pump: String, kind: EventType, data: String, atMs: Int64, reservoir: ReservoirFigures? = nil) {
        self.pump = pump
        self.kind = kind
        self.data = data
        self.atMs = atMs
        self.reservoir = reservoir
    }
}
