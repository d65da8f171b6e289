/// The message type of a frame (header offset 4), from `protocol-spec/PROTOCOL.md` §3.
///
/// A struct over the raw value rather than an enum, so that a type this version does not know is
/// kept as it is (and counted) instead of being lost or mapped to a known one.
public struct MessageType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    /// Wraps a raw message type.
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Programmer identity: boot id, firmware, serial. Programmer → host.
    public static let programmerInfo = MessageType(rawValue: 0x0001)
    /// Begin or end of an interrogated pump session. Programmer → host.
    public static let pumpSession = MessageType(rawValue: 0x0002)
    /// Pump state, dose, concentration, active alarms. Programmer → host.
    public static let pumpStatus = MessageType(rawValue: 0x0003)
    /// Reservoir volume and low-reservoir threshold. Programmer → host.
    public static let reservoir = MessageType(rawValue: 0x0004)
    /// The programmed dosing: mode, flex steps, periodic and patient boluses. Programmer → host.
    public static let doseProgram = MessageType(rawValue: 0x0005)
    /// A refill session. Programmer → host.
    public static let refill = MessageType(rawValue: 0x0006)
    /// An alarm transition, delivered reliably. Programmer → host.
    public static let alarm = MessageType(rawValue: 0x0007)
    /// Programmer liveness and alarm queue. Programmer → host.
    public static let heartbeat = MessageType(rawValue: 0x0008)
    /// Acknowledgement of a stored alarm. Host → programmer.
    public static let ack = MessageType(rawValue: 0x0101)
    /// Host liveness. Host → programmer.
    public static let hostHeartbeat = MessageType(rawValue: 0x0102)

    /// Every type protocol v1 defines.
    public static let allKnown: [MessageType] = [
        .programmerInfo, .pumpSession, .pumpStatus, .reservoir, .doseProgram, .refill, .alarm,
        .heartbeat, .ack, .hostHeartbeat,
    ]

    /// The lower snake-case name used in JSON (`pump_status`), or nil for an unknown type.
    public var name: String? {
        switch self {
        case .programmerInfo: "programmer_info"
        case .pumpSession: "pump_session"
        case .pumpStatus: "pump_status"
        case .reservoir: "reservoir"
        case .doseProgram: "dose_program"
        case .refill: "refill"
        case .alarm: "alarm"
        case .heartbeat: "heartbeat"
        case .ack: "ack"
        case .hostHeartbeat: "host_heartbeat"
        default: nil
        }
    }

    /// The name, or `unknown(0xNNNN)`.
    public var description: String {
        name ?? "unknown(0x\(String(rawValue, radix: 16)))"
    }

    /// The fixed part every payload of this type must have; nil for an unknown type.
    /// Variable parts (flex steps, boluses, alarm detail) are checked by ``minimumLength(payload:)``.
    public var fixedMinimumLength: Int? {
        switch self {
        case .programmerInfo: 48
        case .pumpSession: 56
        case .pumpStatus: 24
        case .reservoir: 40
        case .doseProgram: 24
        case .refill: 40
        case .alarm: 24
        case .heartbeat: 20
        case .ack: 12
        case .hostHeartbeat: 12
        default: nil
        }
    }

    /// The minimum length of this particular payload, counts and detail length included; nil for
    /// an unknown type. A payload shorter than this is a *short payload* and is not delivered.
    public func minimumLength(payload: UnsafeRawBufferPointer) -> Int? {
        guard let fixed = fixedMinimumLength else { return nil }
        guard payload.count >= fixed else { return fixed }
        switch self {
        case .doseProgram:
            let steps = Int(payload[DoseProgramView.Offset.flexStepCount])
            let boluses = Int(payload[DoseProgramView.Offset.periodicBolusCount])
            // More flex steps than the protocol allows can never be satisfied: report a length
            // above the maximum payload so the frame counts as short.
            if steps > DoseProgram.maximumFlexSteps || boluses > DoseProgram.maximumPeriodicBoluses {
                return FrameLayout.maximumPayloadLength + 1
            }
            return fixed + 8 * (steps + boluses)
        case .alarm:
            let detail = Int(payload[AlarmView.Offset.detailLength])
            if detail > Alarm.maximumDetailLength { return FrameLayout.maximumPayloadLength + 1 }
            return fixed + detail
        default:
            return fixed
        }
    }
}
