/// The message type of a frame (header offset 4), from `protocol-spec/PROTOCOL.md` §3.
///
/// A struct over the raw value rather than an enum, so that a type this version does not know is
/// kept as it is (and counted) instead of being lost or mapped to a known one.
public struct MessageType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    /// Wraps a raw message type.
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// Programmer identity: boot id, firmware, serial. Programmer → host.
    @inlinable public static var programmerInfo: MessageType { MessageType(rawValue: 0x0001) }
    /// Begin or end of an interrogated pump session. Programmer → host.
    @inlinable public static var pumpSession: MessageType { MessageType(rawValue: 0x0002) }
    /// Pump state, dose, concentration, active alarms. Programmer → host.
    @inlinable public static var pumpStatus: MessageType { MessageType(rawValue: 0x0003) }
    /// Reservoir volume and low-reservoir threshold. Programmer → host.
    @inlinable public static var reservoir: MessageType { MessageType(rawValue: 0x0004) }
    /// The programmed dosing: mode, flex steps, periodic and patient boluses. Programmer → host.
    @inlinable public static var doseProgram: MessageType { MessageType(rawValue: 0x0005) }
    /// A refill session. Programmer → host.
    @inlinable public static var refill: MessageType { MessageType(rawValue: 0x0006) }
    /// An alarm transition, delivered reliably. Programmer → host.
    @inlinable public static var alarm: MessageType { MessageType(rawValue: 0x0007) }
    /// Programmer liveness and alarm queue. Programmer → host.
    @inlinable public static var heartbeat: MessageType { MessageType(rawValue: 0x0008) }
    /// Acknowledgement of a stored alarm. Host → programmer.
    @inlinable public static var ack: MessageType { MessageType(rawValue: 0x0101) }
    /// Host liveness. Host → programmer.
    @inlinable public static var hostHeartbeat: MessageType { MessageType(rawValue: 0x0102) }

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
    @inlinable
    public var fixedMinimumLength: Int? {
        switch rawValue {
        case 0x0001: 48  // PROGRAMMER_INFO
        case 0x0002: 56  // PUMP_SESSION
        case 0x0003: 24  // PUMP_STATUS
        case 0x0004: 40  // RESERVOIR
        case 0x0005: 24  // DOSE_PROGRAM, fixed part
        case 0x0006: 40  // REFILL
        case 0x0007: 24  // ALARM, fixed part
        case 0x0008: 20  // HEARTBEAT
        case 0x0101: 12  // ACK
        case 0x0102: 12  // HOST_HEARTBEAT
        default: nil
        }
    }

    /// The minimum length of this particular payload, counts and detail length included; nil for
    /// an unknown type. A payload shorter than this is a *short payload* and is not delivered.
    @inlinable
    public func minimumLength(payload: UnsafeRawBufferPointer) -> Int? {
        guard let fixed = fixedMinimumLength else { return nil }
        guard payload.count >= fixed else { return fixed }
        switch rawValue {
        case 0x0005:  // DOSE_PROGRAM
            let steps = Int(payload[DoseProgramView.Offset.flexStepCount])
            let boluses = Int(payload[DoseProgramView.Offset.periodicBolusCount])
            // More flex steps than the protocol allows can never be satisfied: report a length
            // above the maximum payload so the frame counts as short.
            if steps > DoseProgram.maximumFlexSteps || boluses > DoseProgram.maximumPeriodicBoluses {
                return FrameLayout.maximumPayloadLength + 1
            }
            return fixed + 8 * (steps + boluses)
        case 0x0007:  // ALARM
            let detail = Int(payload[AlarmView.Offset.detailLength])
            if detail > Alarm.maximumDetailLength { return FrameLayout.maximumPayloadLength + 1 }
            return fixed + detail
        default:
            return fixed
        }
    }
}
