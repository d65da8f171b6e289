/// An enumeration carried on the wire as an integer, kept raw so that a value this version does
/// not know survives (`protocol-spec/PROTOCOL.md` §4: never map an unknown code to a known one).
///
/// Conforming types list their names densely from ``firstNamedValue``; ``name`` is nil for a
/// value outside that list.
public protocol WireEnumeration: RawRepresentable, Hashable, Sendable, CustomStringConvertible
where RawValue: FixedWidthInteger & Sendable {
    /// The lower snake-case names of the known values, for raw values `firstNamedValue...`.
    static var names: [String] { get }
    /// The raw value of `names[0]`.
    static var firstNamedValue: RawValue { get }
    /// Wraps a raw value (every raw value is representable).
    init(rawValue: RawValue)
}

extension WireEnumeration {
    /// The lower snake-case name, or nil when this version does not know the value.
    public var name: String? {
        let index = Int(rawValue) - Int(Self.firstNamedValue)
        return index >= 0 && index < Self.names.count ? Self.names[index] : nil
    }

    /// True when this version knows the value.
    public var isKnown: Bool { name != nil }

    /// The name, or `unknown(N)`.
    public var description: String { name ?? "unknown(\(rawValue))" }

    /// The value whose name is `name`, or nil.
    public init?(name: String) {
        guard let index = Self.names.firstIndex(of: name) else { return nil }
        self.init(rawValue: Self.firstNamedValue + RawValue(index))
    }
}

/// Begin or end of a pump session (`PUMP_SESSION.event`).
public struct SessionEvent: WireEnumeration {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let names = ["begin", "end"]
    public static let firstNamedValue: UInt8 = 1
    /// The telemetry head was placed over the pump and it was interrogated.
    public static let begin = SessionEvent(rawValue: 1)
    /// The session ended.
    public static let end = SessionEvent(rawValue: 2)
}

/// The pump battery (`PUMP_SESSION.battery_state`).
public struct BatteryState: WireEnumeration {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let names = ["ok", "eri", "eos"]
    public static let firstNamedValue: UInt8 = 0
    /// Battery good.
    public static let ok = BatteryState(rawValue: 0)
    /// Elective replacement indicator: the pump stops about 90 days later.
    public static let eri = BatteryState(rawValue: 1)
    /// End of service: the pump has stopped.
    public static let eos = BatteryState(rawValue: 2)
}

/// What the pump is doing (`PUMP_STATUS.pump_state`).
public struct PumpState: WireEnumeration {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let names = ["infusing", "stopped", "minimum_rate", "critical_alarm", "end_of_service"]
    public static let firstNamedValue: UInt8 = 0
    /// Delivering the programmed dose.
    public static let infusing = PumpState(rawValue: 0)
    /// Stopped by the clinician.
    public static let stopped = PumpState(rawValue: 1)
    /// Running at minimum rate (e.g. after a low-battery reset): effectively no therapy.
    public static let minimumRate = PumpState(rawValue: 2)
    /// A critical alarm stopped the drug flow.
    public static let criticalAlarm = PumpState(rawValue: 3)
    /// The battery is exhausted.
    public static let endOfService = PumpState(rawValue: 4)
}

/// How the dose is delivered (`dosing_mode`).
public struct DosingMode: WireEnumeration {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let names = ["simple_continuous", "flex", "periodic_bolus", "single_bolus", "prime"]
    public static let firstNamedValue: UInt8 = 0
    /// One constant rate.
    public static let simpleContinuous = DosingMode(rawValue: 0)
    /// Up to 13 rate steps per day.
    public static let flex = DosingMode(rawValue: 1)
    /// Periodic boluses over a base rate.
    public static let periodicBolus = DosingMode(rawValue: 2)
    /// One bolus.
    public static let singleBolus = DosingMode(rawValue: 3)
    /// Priming bolus after a refill or catheter revision.
    public static let prime = DosingMode(rawValue: 4)
}

/// Where the reservoir volume comes from (`RESERVOIR.volume_source`).
public struct VolumeSource: WireEnumeration {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let names = ["calculated", "measured"]
    public static let firstNamedValue: UInt8 = 0
    /// Calculated by the pump from the programmed rate: not measured, may drift.
    public static let calculated = VolumeSource(rawValue: 0)
    /// Measured at refill.
    public static let measured = VolumeSource(rawValue: 1)
}

/// What an alarm is about (`ALARM.code`).
public struct AlarmCode: WireEnumeration {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let names = [
        "low_reservoir", "empty_reservoir", "eri", "eos", "motor_stall", "low_battery_reset",
        "memory_error", "flow_fault",
    ]
    public static let firstNamedValue: UInt16 = 1
    /// Reservoir at or below the programmed threshold.
    public static let lowReservoir = AlarmCode(rawValue: 1)
    /// Reservoir empty: drug no longer flowing (critical).
    public static let emptyReservoir = AlarmCode(rawValue: 2)
    /// Elective replacement indicator.
    public static let eri = AlarmCode(rawValue: 3)
    /// End of service (critical).
    public static let eos = AlarmCode(rawValue: 4)
    /// Motor stall (critical).
    public static let motorStall = AlarmCode(rawValue: 5)
    /// Low-battery reset to minimum rate (critical).
    public static let lowBatteryReset = AlarmCode(rawValue: 6)
    /// Pump memory error.
    public static let memoryError = AlarmCode(rawValue: 7)
    /// Flow or catheter fault.
    public static let flowFault = AlarmCode(rawValue: 8)
}

/// Alarm priority after IEC 60601-1-8 (`ALARM.priority`).
public struct AlarmPriority: WireEnumeration {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let names = ["high", "medium", "low", "info"]
    public static let firstNamedValue: UInt8 = 1
    /// High priority: immediate response required.
    public static let high = AlarmPriority(rawValue: 1)
    /// Medium priority: prompt response required.
    public static let medium = AlarmPriority(rawValue: 2)
    /// Low priority: awareness required.
    public static let low = AlarmPriority(rawValue: 3)
    /// An information signal, not an alarm.
    public static let info = AlarmPriority(rawValue: 4)
}

/// Raised or cleared (`ALARM.transition`).
public struct AlarmTransition: WireEnumeration {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let names = ["raised", "cleared"]
    public static let firstNamedValue: UInt8 = 1
    /// The condition began.
    public static let raised = AlarmTransition(rawValue: 1)
    /// The condition ended.
    public static let cleared = AlarmTransition(rawValue: 2)
}

/// The host's answer to a reliable message (`ACK.status`).
public struct AckStatus: WireEnumeration {
    public var rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let names = ["stored", "rejected"]
    public static let firstNamedValue: UInt8 = 1
    /// Durably stored: the programmer may drop it from its queue.
    public static let stored = AckStatus(rawValue: 1)
    /// Not stored: the programmer keeps it and retransmits.
    public static let rejected = AckStatus(rawValue: 2)
}
