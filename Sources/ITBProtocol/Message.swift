/// Any protocol v1 message as an owned value: what a consumer keeps after the decoder's closure
/// returns, and what the simulator and the ACK path encode.
public enum Message: Hashable, Sendable {
    case programmerInfo(ProgrammerInfo)
    case pumpSession(PumpSession)
    case pumpStatus(PumpStatus)
    case reservoir(Reservoir)
    case doseProgram(DoseProgram)
    case refill(Refill)
    case alarm(Alarm)
    case heartbeat(Heartbeat)
    case ack(Ack)
    case hostHeartbeat(HostHeartbeat)

    /// Copies a frame's message out of the receive buffer; nil for a type this version does not
    /// know or a payload below its minimum (``FrameDecoder`` never delivers those).
    public init?(_ frame: Frame) {
        switch frame.type {
        case .programmerInfo: guard let v = ProgrammerInfoView(frame) else { return nil }; self = .programmerInfo(.init(v))
        case .pumpSession: guard let v = PumpSessionView(frame) else { return nil }; self = .pumpSession(.init(v))
        case .pumpStatus: guard let v = PumpStatusView(frame) else { return nil }; self = .pumpStatus(.init(v))
        case .reservoir: guard let v = ReservoirView(frame) else { return nil }; self = .reservoir(.init(v))
        case .doseProgram: guard let v = DoseProgramView(frame) else { return nil }; self = .doseProgram(.init(v))
        case .refill: guard let v = RefillView(frame) else { return nil }; self = .refill(.init(v))
        case .alarm: guard let v = AlarmView(frame) else { return nil }; self = .alarm(.init(v))
        case .heartbeat: guard let v = HeartbeatView(frame) else { return nil }; self = .heartbeat(.init(v))
        case .ack: guard let v = AckView(frame) else { return nil }; self = .ack(.init(v))
        case .hostHeartbeat: guard let v = HostHeartbeatView(frame) else { return nil }; self = .hostHeartbeat(.init(v))
        default: return nil
        }
    }

    /// The message type on the wire.
    public var type: MessageType {
        switch self {
        case .programmerInfo: .programmerInfo
        case .pumpSession: .pumpSession
        case .pumpStatus: .pumpStatus
        case .reservoir: .reservoir
        case .doseProgram: .doseProgram
        case .refill: .refill
        case .alarm: .alarm
        case .heartbeat: .heartbeat
        case .ack: .ack
        case .hostHeartbeat: .hostHeartbeat
        }
    }

    /// The payload as an existential, for code that treats every message alike.
    public var payload: any MessagePayload {
        switch self {
        case .programmerInfo(let m): m
        case .pumpSession(let m): m
        case .pumpStatus(let m): m
        case .reservoir(let m): m
        case .doseProgram(let m): m
        case .refill(let m): m
        case .alarm(let m): m
        case .heartbeat(let m): m
        case .ack(let m): m
        case .hostHeartbeat(let m): m
        }
    }
}
