// ALARM (0x0007), delivered reliably, and the host's ACK (0x0101) and HOST_HEARTBEAT (0x0102).

/// Reads `ALARM` in place (payload minimum 24 + detail_length).
public struct AlarmView: MessageView {
    @inlinable public static var messageType: MessageType { .alarm }
    /// Offsets the minimum-length check needs.
    @usableFromInline
    enum Offset {
        @usableFromInline static var detailLength: Int { 16 }
        @usableFromInline static var detail: Int { 24 }
    }
    public let payload: UnsafeRawBufferPointer
    @inlinable public init(uncheckedPayload: UnsafeRawBufferPointer) { payload = uncheckedPayload }
    /// Device clock at the transition; 0 when absent.
    @inlinable public var onsetTimeMs: Int64 { payload.littleEndian(at: 0) }
    /// Persistent, increasing per alarm event; with the programmer serial, the alarm's identity.
    @inlinable public var alarmID: UInt32 { payload.littleEndian(at: 8) }
    /// What the alarm is about; unknown codes kept raw.
    @inlinable public var code: AlarmCode { AlarmCode(rawValue: payload.littleEndian(at: 12)) }
    /// IEC 60601-1-8 priority.
    @inlinable public var priority: AlarmPriority { AlarmPriority(rawValue: payload[14]) }
    /// Raised or cleared.
    @inlinable public var transition: AlarmTransition { AlarmTransition(rawValue: payload[15]) }
    /// The optional ASCII detail: `detail_length` bytes, or fewer if a NUL comes first.
    @inlinable public var detailBytes: UnsafeRawBufferPointer {
        payload.fixedASCII(at: Offset.detail, width: Int(payload[Offset.detailLength]))
    }
}

/// `ALARM`: an alarm raised or cleared on the pump, retransmitted until the host stores it.
public struct Alarm: MessagePayload {
    @inlinable public static var messageType: MessageType { .alarm }
    /// The longest detail text.
    @inlinable public static var maximumDetailLength: Int { 64 }
    /// Onset time, device clock.
    public var onsetTimeMs: Int64
    /// Persistent alarm id.
    public var alarmID: UInt32
    /// Alarm code.
    public var code: AlarmCode
    /// Priority.
    public var priority: AlarmPriority
    /// Raised or cleared.
    public var transition: AlarmTransition
    /// Short ASCII detail (at most 64 bytes are sent).
    public var detail: String

    /// Creates the message from its fields.
    public init(onsetTimeMs: Int64, alarmID: UInt32, code: AlarmCode, priority: AlarmPriority, transition: AlarmTransition, detail: String = "") {
        self.onsetTimeMs = onsetTimeMs
        self.alarmID = alarmID
        self.code = code
        self.priority = priority
        self.transition = transition
        self.detail = detail
    }

    public init(_ view: AlarmView) {
        self.init(
            onsetTimeMs: view.onsetTimeMs, alarmID: view.alarmID, code: view.code, priority: view.priority,
            transition: view.transition, detail: String(protocolASCII: view.detailBytes))
    }

    public func encode(into writer: inout PayloadWriter) {
        let detailBytes = Array(detail.protocolBytes.prefix(Self.maximumDetailLength))
        writer.write(onsetTimeMs)
        writer.write(alarmID)
        writer.write(code.rawValue)
        writer.write(priority.rawValue)
        writer.write(transition.rawValue)
        writer.write(UInt8(detailBytes.count))
        writer.writeZeros(7)
        writer.writeBytes(detailBytes)
    }
}

/// Reads `ACK` in place (payload minimum 12 bytes).
public struct AckView: MessageView {
    @inlinable public static var messageType: MessageType { .ack }
    public let payload: UnsafeRawBufferPointer
    @inlinable public init(uncheckedPayload: UnsafeRawBufferPointer) { payload = uncheckedPayload }
    /// Sequence number of the frame acknowledged.
    @inlinable public var ackedSequence: UInt32 { payload.littleEndian(at: 0) }
    /// The alarm acknowledged; 0 when not an alarm.
    @inlinable public var alarmID: UInt32 { payload.littleEndian(at: 4) }
    /// The message type acknowledged.
    @inlinable public var ackedType: MessageType { MessageType(rawValue: payload.littleEndian(at: 8)) }
    /// Stored or rejected.
    @inlinable public var status: AckStatus { AckStatus(rawValue: payload[10]) }
}

/// `ACK`: the host stored (or could not store) an alarm. One of the two frames the host sends.
public struct Ack: MessagePayload {
    @inlinable public static var messageType: MessageType { .ack }
    /// Sequence number of the frame acknowledged.
    public var ackedSequence: UInt32
    /// The alarm acknowledged; 0 when not an alarm.
    public var alarmID: UInt32
    /// The message type acknowledged.
    public var ackedType: MessageType
    /// Stored or rejected.
    public var status: AckStatus

    /// Creates the message from its fields.
    public init(ackedSequence: UInt32, alarmID: UInt32, ackedType: MessageType, status: AckStatus) {
        self.ackedSequence = ackedSequence
        self.alarmID = alarmID
        self.ackedType = ackedType
        self.status = status
    }

    public init(_ view: AckView) {
        self.init(ackedSequence: view.ackedSequence, alarmID: view.alarmID, ackedType: view.ackedType, status: view.status)
    }

    public func encode(into writer: inout PayloadWriter) {
        writer.write(ackedSequence)
        writer.write(alarmID)
        writer.write(ackedType.rawValue)
        writer.write(status.rawValue)
        writer.writeZeros(1)
    }
}

/// Reads `HOST_HEARTBEAT` in place (payload minimum 12 bytes).
public struct HostHeartbeatView: MessageView {
    @inlinable public static var messageType: MessageType { .hostHeartbeat }
    public let payload: UnsafeRawBufferPointer
    @inlinable public init(uncheckedPayload: UnsafeRawBufferPointer) { payload = uncheckedPayload }
    /// Host clock, ms since the epoch.
    @inlinable public var hostTimeMs: Int64 { payload.littleEndian(at: 0) }
    /// Seconds since the host daemon started.
    @inlinable public var uptimeS: UInt32 { payload.littleEndian(at: 8) }
}

/// `HOST_HEARTBEAT`: host liveness, once a second. The host never sets the device clock.
public struct HostHeartbeat: MessagePayload {
    @inlinable public static var messageType: MessageType { .hostHeartbeat }
    /// Host clock.
    public var hostTimeMs: Int64
    /// Host daemon uptime, seconds.
    public var uptimeS: UInt32

    /// Creates the message from its fields.
    public init(hostTimeMs: Int64, uptimeS: UInt32) {
        self.hostTimeMs = hostTimeMs
        self.uptimeS = uptimeS
    }

    public init(_ view: HostHeartbeatView) {
        self.init(hostTimeMs: view.hostTimeMs, uptimeS: view.uptimeS)
    }

    public func encode(into writer: inout PayloadWriter) {
        writer.write(hostTimeMs)
        writer.write(uptimeS)
        writer.writeZeros(4)
    }
}
