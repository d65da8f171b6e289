// PROGRAMMER_INFO (0x0001) and HEARTBEAT (0x0008): who the programmer is and that it is alive.

/// Reads `PROGRAMMER_INFO` in place (payload minimum 48 bytes).
public struct ProgrammerInfoView: MessageView {
    @inlinable public static var messageType: MessageType { .programmerInfo }
    public let payload: UnsafeRawBufferPointer
    @inlinable public init(uncheckedPayload: UnsafeRawBufferPointer) { payload = uncheckedPayload }
    /// Random per programmer boot; a new value means the programmer restarted.
    @inlinable public var bootID: UInt64 { payload.littleEndian(at: 0) }
    /// `major << 16 | minor << 8 | patch`.
    @inlinable public var firmwareVersion: UInt32 { payload.littleEndian(at: 8) }
    /// The minor version of protocol 1 the programmer speaks.
    @inlinable public var protocolMinor: UInt16 { payload.littleEndian(at: 12) }
    /// The programmer's serial number (the bridge's device id), up to its first NUL.
    @inlinable public var programmerSerialBytes: UnsafeRawBufferPointer { payload.fixedASCII(at: 16, width: 16) }
    /// The hardware model, up to its first NUL.
    @inlinable public var hardwareModelBytes: UnsafeRawBufferPointer { payload.fixedASCII(at: 32, width: 16) }
}

/// `PROGRAMMER_INFO`: the programmer's identity, sent on connect and every 5 minutes.
public struct ProgrammerInfo: MessagePayload {
    @inlinable public static var messageType: MessageType { .programmerInfo }
    /// Random per programmer boot.
    public var bootID: UInt64
    /// `major << 16 | minor << 8 | patch`.
    public var firmwareVersion: UInt32
    /// Protocol minor version.
    public var protocolMinor: UInt16
    /// Serial number, at most 16 ASCII bytes.
    public var programmerSerial: String
    /// Hardware model, at most 16 ASCII bytes.
    public var hardwareModel: String

    /// Creates the message from its fields.
    public init(bootID: UInt64, firmwareVersion: UInt32, protocolMinor: UInt16, programmerSerial: String, hardwareModel: String) {
        self.bootID = bootID
        self.firmwareVersion = firmwareVersion
        self.protocolMinor = protocolMinor
        self.programmerSerial = programmerSerial
        self.hardwareModel = hardwareModel
    }

    public init(_ view: ProgrammerInfoView) {
        self.init(
            bootID: view.bootID, firmwareVersion: view.firmwareVersion, protocolMinor: view.protocolMinor,
            programmerSerial: String(protocolASCII: view.programmerSerialBytes),
            hardwareModel: String(protocolASCII: view.hardwareModelBytes))
    }

    public func encode(into writer: inout PayloadWriter) {
        writer.write(bootID)
        writer.write(firmwareVersion)
        writer.write(protocolMinor)
        writer.writeZeros(2)
        writer.writeASCII(programmerSerial, width: 16)
        writer.writeASCII(hardwareModel, width: 16)
    }
}

/// Reads `HEARTBEAT` in place (payload minimum 20 bytes).
public struct HeartbeatView: MessageView {
    @inlinable public static var messageType: MessageType { .heartbeat }
    public let payload: UnsafeRawBufferPointer
    @inlinable public init(uncheckedPayload: UnsafeRawBufferPointer) { payload = uncheckedPayload }
    /// As in `PROGRAMMER_INFO`.
    @inlinable public var bootID: UInt64 { payload.littleEndian(at: 0) }
    /// Seconds since the programmer booted.
    @inlinable public var uptimeS: UInt32 { payload.littleEndian(at: 8) }
    /// The highest alarm id the programmer has issued (0: none).
    @inlinable public var highestAlarmID: UInt32 { payload.littleEndian(at: 12) }
    /// Alarms waiting for an ACK in the programmer's queue.
    @inlinable public var unackedAlarmCount: UInt32 { payload.littleEndian(at: 16) }
}

/// `HEARTBEAT`: programmer liveness and the state of its alarm queue, at least once a second.
public struct Heartbeat: MessagePayload {
    @inlinable public static var messageType: MessageType { .heartbeat }
    /// As in `PROGRAMMER_INFO`.
    public var bootID: UInt64
    /// Seconds since the programmer booted.
    public var uptimeS: UInt32
    /// The highest alarm id issued (0: none).
    public var highestAlarmID: UInt32
    /// Alarms not yet acknowledged.
    public var unackedAlarmCount: UInt32

    /// Creates the message from its fields.
    public init(bootID: UInt64, uptimeS: UInt32, highestAlarmID: UInt32, unackedAlarmCount: UInt32) {
        self.bootID = bootID
        self.uptimeS = uptimeS
        self.highestAlarmID = highestAlarmID
        self.unackedAlarmCount = unackedAlarmCount
    }

    public init(_ view: HeartbeatView) {
        self.init(bootID: view.bootID, uptimeS: view.uptimeS, highestAlarmID: view.highestAlarmID, unackedAlarmCount: view.unackedAlarmCount)
    }

    public func encode(into writer: inout PayloadWriter) {
        writer.write(bootID)
        writer.write(uptimeS)
        writer.write(highestAlarmID)
        writer.write(unackedAlarmCount)
        writer.writeZeros(4)
    }
}
