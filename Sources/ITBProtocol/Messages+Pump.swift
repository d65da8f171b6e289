// PUMP_SESSION (0x0002), PUMP_STATUS (0x0003) and RESERVOIR (0x0004): what the pump is doing.

/// Reads `PUMP_SESSION` in place (payload minimum 56 bytes).
public struct PumpSessionView: MessageView {
    @inlinable public static var messageType: MessageType { .pumpSession }
    public let payload: UnsafeRawBufferPointer
    @inlinable public init(uncheckedPayload: UnsafeRawBufferPointer) { payload = uncheckedPayload }
    /// Implant date, ms since the epoch; 0 when absent.
    @inlinable public var implantDateMs: Int64 { payload.littleEndian(at: 0) }
    /// When the elective replacement indicator was set; 0 when not set.
    @inlinable public var eriDateMs: Int64 { payload.littleEndian(at: 8) }
    /// Reservoir capacity in µL; 0 when absent.
    @inlinable public var reservoirCapacityUL: UInt32 { payload.littleEndian(at: 16) }
    /// Manufacturer code (1 Medtronic, 2 Flowonix; others kept raw).
    @inlinable public var manufacturerCode: UInt16 { payload.littleEndian(at: 20) }
    /// Begin or end.
    @inlinable public var event: SessionEvent { SessionEvent(rawValue: payload[22]) }
    /// Battery state.
    @inlinable public var batteryState: BatteryState { BatteryState(rawValue: payload[23]) }
    /// Pump model, up to its first NUL.
    @inlinable public var pumpModelBytes: UnsafeRawBufferPointer { payload.fixedASCII(at: 24, width: 16) }
    /// Pump serial, up to its first NUL.
    @inlinable public var pumpSerialBytes: UnsafeRawBufferPointer { payload.fixedASCII(at: 40, width: 16) }
}

/// `PUMP_SESSION`: the begin or end of an interrogated pump session.
public struct PumpSession: MessagePayload {
    @inlinable public static var messageType: MessageType { .pumpSession }
    /// Implant date, ms since the epoch; 0 when absent.
    public var implantDateMs: Int64
    /// ERI date; 0 when not set.
    public var eriDateMs: Int64
    /// Reservoir capacity in µL.
    public var reservoirCapacityUL: UInt32
    /// Manufacturer code.
    public var manufacturerCode: UInt16
    /// Begin or end.
    public var event: SessionEvent
    /// Battery state.
    public var batteryState: BatteryState
    /// Pump model.
    public var pumpModel: String
    /// Pump serial.
    public var pumpSerial: String

    /// Creates the message from its fields.
    public init(
        implantDateMs: Int64, eriDateMs: Int64, reservoirCapacityUL: UInt32, manufacturerCode: UInt16,
        event: SessionEvent, batteryState: BatteryState, pumpModel: String, pumpSerial: String
    ) {
        self.implantDateMs = implantDateMs
        self.eriDateMs = eriDateMs
        self.reservoirCapacityUL = reservoirCapacityUL
        self.manufacturerCode = manufacturerCode
        self.event = event
        self.batteryState = batteryState
        self.pumpModel = pumpModel
        self.pumpSerial = pumpSerial
    }

    public init(_ view: PumpSessionView) {
        self.init(
            implantDateMs: view.implantDateMs, eriDateMs: view.eriDateMs, reservoirCapacityUL: view.reservoirCapacityUL,
            manufacturerCode: view.manufacturerCode, event: view.event, batteryState: view.batteryState,
            pumpModel: String(protocolASCII: view.pumpModelBytes), pumpSerial: String(protocolASCII: view.pumpSerialBytes))
    }

    public func encode(into writer: inout PayloadWriter) {
        writer.write(implantDateMs)
        writer.write(eriDateMs)
        writer.write(reservoirCapacityUL)
        writer.write(manufacturerCode)
        writer.write(event.rawValue)
        writer.write(batteryState.rawValue)
        writer.writeASCII(pumpModel, width: 16)
        writer.writeASCII(pumpSerial, width: 16)
    }
}

/// Reads `PUMP_STATUS` in place (payload minimum 24 bytes).
public struct PumpStatusView: MessageView {
    @inlinable public static var messageType: MessageType { .pumpStatus }
    public let payload: UnsafeRawBufferPointer
    @inlinable public init(uncheckedPayload: UnsafeRawBufferPointer) { payload = uncheckedPayload }
    /// Device clock, ms since the epoch; 0 when absent.
    @inlinable public var deviceTimeMs: Int64 { payload.littleEndian(at: 0) }
    /// Programmed daily dose in tenths of a µg/day.
    @inlinable public var dailyDoseUgX10: UInt32 { payload.littleEndian(at: 8) }
    /// Drug concentration, µg/mL; 0 when absent.
    @inlinable public var concentrationUgPerML: UInt32 { payload.littleEndian(at: 12) }
    /// Bit k set: alarm code k + 1 is active.
    @inlinable public var activeAlarmMask: UInt32 { payload.littleEndian(at: 16) }
    /// What the pump is doing.
    @inlinable public var pumpState: PumpState { PumpState(rawValue: payload[20]) }
    /// How the dose is delivered.
    @inlinable public var dosingMode: DosingMode { DosingMode(rawValue: payload[21]) }
    /// Telemetry link quality 0–100; 255 when unknown.
    @inlinable public var linkQualityPct: UInt8 { payload[22] }
}

/// `PUMP_STATUS`: pump state, dose and active alarms, every second during a session.
public struct PumpStatus: MessagePayload {
    @inlinable public static var messageType: MessageType { .pumpStatus }
    /// The value of `link_quality_pct` that means "unknown".
    @inlinable public static var linkQualityUnknown: UInt8 { 255 }
    /// Device clock, ms since the epoch.
    public var deviceTimeMs: Int64
    /// Daily dose, tenths of a µg/day.
    public var dailyDoseUgX10: UInt32
    /// Concentration, µg/mL.
    public var concentrationUgPerML: UInt32
    /// Active alarms, bit k = code k + 1.
    public var activeAlarmMask: UInt32
    /// Pump state.
    public var pumpState: PumpState
    /// Dosing mode.
    public var dosingMode: DosingMode
    /// Link quality 0–100, 255 unknown.
    public var linkQualityPct: UInt8

    /// Creates the message from its fields.
    public init(
        deviceTimeMs: Int64, dailyDoseUgX10: UInt32, concentrationUgPerML: UInt32, activeAlarmMask: UInt32,
        pumpState: PumpState, dosingMode: DosingMode, linkQualityPct: UInt8
    ) {
        self.deviceTimeMs = deviceTimeMs
        self.dailyDoseUgX10 = dailyDoseUgX10
        self.concentrationUgPerML = concentrationUgPerML
        self.activeAlarmMask = activeAlarmMask
        self.pumpState = pumpState
        self.dosingMode = dosingMode
        self.linkQualityPct = linkQualityPct
    }

    public init(_ view: PumpStatusView) {
        self.init(
            deviceTimeMs: view.deviceTimeMs, dailyDoseUgX10: view.dailyDoseUgX10, concentrationUgPerML: view.concentrationUgPerML,
            activeAlarmMask: view.activeAlarmMask, pumpState: view.pumpState, dosingMode: view.dosingMode,
            linkQualityPct: view.linkQualityPct)
    }

    public func encode(into writer: inout PayloadWriter) {
        writer.write(deviceTimeMs)
        writer.write(dailyDoseUgX10)
        writer.write(concentrationUgPerML)
        writer.write(activeAlarmMask)
        writer.write(pumpState.rawValue)
        writer.write(dosingMode.rawValue)
        writer.write(linkQualityPct)
        writer.writeZeros(1)
    }
}

/// Reads `RESERVOIR` in place (payload minimum 40 bytes).
public struct ReservoirView: MessageView {
    @inlinable public static var messageType: MessageType { .reservoir }
    public let payload: UnsafeRawBufferPointer
    @inlinable public init(uncheckedPayload: UnsafeRawBufferPointer) { payload = uncheckedPayload }
    /// Device clock; 0 when absent.
    @inlinable public var deviceTimeMs: Int64 { payload.littleEndian(at: 0) }
    /// Last refill; 0 when absent.
    @inlinable public var lastRefillTimeMs: Int64 { payload.littleEndian(at: 8) }
    /// Reservoir volume in tenths of a µL.
    @inlinable public var volumeULX10: UInt32 { payload.littleEndian(at: 16) }
    /// Capacity in µL; 0 when absent.
    @inlinable public var capacityUL: UInt32 { payload.littleEndian(at: 20) }
    /// Low-reservoir alarm threshold in µL; 0 when absent.
    @inlinable public var lowReservoirThresholdUL: UInt32 { payload.littleEndian(at: 24) }
    /// Volume delivered since the last refill, tenths of a µL.
    @inlinable public var deliveredSinceRefillULX10: UInt32 { payload.littleEndian(at: 28) }
    /// Calculated or measured.
    @inlinable public var volumeSource: VolumeSource { VolumeSource(rawValue: payload[32]) }
}

/// `RESERVOIR`: how much drug the pump believes is left.
public struct Reservoir: MessagePayload {
    @inlinable public static var messageType: MessageType { .reservoir }
    /// Device clock.
    public var deviceTimeMs: Int64
    /// Last refill time.
    public var lastRefillTimeMs: Int64
    /// Volume, tenths of a µL.
    public var volumeULX10: UInt32
    /// Capacity, µL.
    public var capacityUL: UInt32
    /// Low-reservoir alarm threshold, µL.
    public var lowReservoirThresholdUL: UInt32
    /// Delivered since refill, tenths of a µL.
    public var deliveredSinceRefillULX10: UInt32
    /// Calculated or measured.
    public var volumeSource: VolumeSource

    /// Creates the message from its fields.
    public init(
        deviceTimeMs: Int64, lastRefillTimeMs: Int64, volumeULX10: UInt32, capacityUL: UInt32,
        lowReservoirThresholdUL: UInt32, deliveredSinceRefillULX10: UInt32, volumeSource: VolumeSource
    ) {
        self.deviceTimeMs = deviceTimeMs
        self.lastRefillTimeMs = lastRefillTimeMs
        self.volumeULX10 = volumeULX10
        self.capacityUL = capacityUL
        self.lowReservoirThresholdUL = lowReservoirThresholdUL
        self.deliveredSinceRefillULX10 = deliveredSinceRefillULX10
        self.volumeSource = volumeSource
    }

    public init(_ view: ReservoirView) {
        self.init(
            deviceTimeMs: view.deviceTimeMs, lastRefillTimeMs: view.lastRefillTimeMs, volumeULX10: view.volumeULX10,
            capacityUL: view.capacityUL, lowReservoirThresholdUL: view.lowReservoirThresholdUL,
            deliveredSinceRefillULX10: view.deliveredSinceRefillULX10, volumeSource: view.volumeSource)
    }

    public func encode(into writer: inout PayloadWriter) {
        writer.write(deviceTimeMs)
        writer.write(lastRefillTimeMs)
        writer.write(volumeULX10)
        writer.write(capacityUL)
        writer.write(lowReservoirThresholdUL)
        writer.write(deliveredSinceRefillULX10)
        writer.write(volumeSource.rawValue)
        writer.writeZeros(7)
    }
}
