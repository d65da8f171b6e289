// DOSE_PROGRAM (0x0005) and REFILL (0x0006): how the drug is programmed and refilled.

/// Reads `DOSE_PROGRAM` in place (payload minimum 24 + 8 × (steps + boluses)).
public struct DoseProgramView: MessageView {
    @inlinable public static var messageType: MessageType { .doseProgram }
    /// Offsets the minimum-length check needs.
    @usableFromInline
    enum Offset {
        @usableFromInline static var flexStepCount: Int { 21 }
        @usableFromInline static var periodicBolusCount: Int { 22 }
        @usableFromInline static var entries: Int { 24 }
    }
    public let payload: UnsafeRawBufferPointer
    @inlinable public init(uncheckedPayload: UnsafeRawBufferPointer) { payload = uncheckedPayload }
    /// Device clock; 0 when absent.
    @inlinable public var deviceTimeMs: Int64 { payload.littleEndian(at: 0) }
    /// Programmed 24-hour total, tenths of a µg.
    @inlinable public var dailyDoseUgX10: UInt32 { payload.littleEndian(at: 8) }
    /// Patient-activated bolus dose, tenths of a µg; 0 when none is allowed.
    @inlinable public var patientBolusDoseUgX10: UInt32 { payload.littleEndian(at: 12) }
    /// Minimum minutes between patient boluses.
    @inlinable public var patientBolusLockoutMin: UInt16 { payload.littleEndian(at: 16) }
    /// Most patient boluses per day.
    @inlinable public var patientBolusMaxPerDay: UInt16 { payload.littleEndian(at: 18) }
    /// Dosing mode.
    @inlinable public var mode: DosingMode { DosingMode(rawValue: payload[20]) }
    /// Number of flex steps (0–13).
    @inlinable public var flexStepCount: Int { Int(payload[Offset.flexStepCount]) }
    /// Number of periodic boluses (0–24).
    @inlinable public var periodicBolusCount: Int { Int(payload[Offset.periodicBolusCount]) }
    /// Flex step `index` (0 ..< flexStepCount).
    @inlinable public func flexStep(_ index: Int) -> DoseProgram.FlexStep {
        precondition(index >= 0 && index < flexStepCount, "flex step index out of range")
        let at = Offset.entries + 8 * index
        return .init(startMinute: payload.littleEndian(at: at), rateUgPerDayX10: payload.littleEndian(at: at + 4))
    }
    /// Periodic bolus `index` (0 ..< periodicBolusCount).
    @inlinable public func periodicBolus(_ index: Int) -> DoseProgram.PeriodicBolus {
        precondition(index >= 0 && index < periodicBolusCount, "periodic bolus index out of range")
        let at = Offset.entries + 8 * (flexStepCount + index)
        return .init(
            startMinute: payload.littleEndian(at: at), durationMin: payload.littleEndian(at: at + 2),
            doseUgX10: payload.littleEndian(at: at + 4))
    }
}

/// `DOSE_PROGRAM`: the programmed dosing. Read-only here: the bridge never programs a pump.
public struct DoseProgram: MessagePayload {
    @inlinable public static var messageType: MessageType { .doseProgram }
    /// Flex dosing allows at most 13 rate steps a day.
    @inlinable public static var maximumFlexSteps: Int { 13 }
    /// At most 24 periodic boluses a day.
    @inlinable public static var maximumPeriodicBoluses: Int { 24 }

    /// One flex-dosing step: from `startMinute` of the day, this rate.
    public struct FlexStep: Hashable, Sendable {
        /// Minute of the day (0–1439) the rate begins.
        public var startMinute: UInt16
        /// Rate, tenths of a µg/day.
        public var rateUgPerDayX10: UInt32
        /// Creates a step.
        @inlinable public init(startMinute: UInt16, rateUgPerDayX10: UInt32) {
            self.startMinute = startMinute
            self.rateUgPerDayX10 = rateUgPerDayX10
        }
    }

    /// One periodic bolus.
    public struct PeriodicBolus: Hashable, Sendable {
        /// Minute of the day (0–1439) it begins.
        public var startMinute: UInt16
        /// Duration in minutes.
        public var durationMin: UInt16
        /// Dose, tenths of a µg.
        public var doseUgX10: UInt32
        /// Creates a bolus.
        @inlinable public init(startMinute: UInt16, durationMin: UInt16, doseUgX10: UInt32) {
            self.startMinute = startMinute
            self.durationMin = durationMin
            self.doseUgX10 = doseUgX10
        }
    }

    /// Device clock.
    public var deviceTimeMs: Int64
    /// Programmed 24-hour total, tenths of a µg.
    public var dailyDoseUgX10: UInt32
    /// Patient bolus dose, tenths of a µg (0: none).
    public var patientBolusDoseUgX10: UInt32
    /// Patient bolus lockout, minutes.
    public var patientBolusLockoutMin: UInt16
    /// Patient boluses per day at most.
    public var patientBolusMaxPerDay: UInt16
    /// Dosing mode.
    public var mode: DosingMode
    /// Flex steps (at most 13).
    public var flexSteps: [FlexStep]
    /// Periodic boluses (at most 24).
    public var periodicBoluses: [PeriodicBolus]

    /// Creates the message from its fields.
    public init(
        deviceTimeMs: Int64, dailyDoseUgX10: UInt32, patientBolusDoseUgX10: UInt32, patientBolusLockoutMin: UInt16,
        patientBolusMaxPerDay: UInt16, mode: DosingMode, flexSteps: [FlexStep], periodicBoluses: [PeriodicBolus]
    ) {
        self.deviceTimeMs = deviceTimeMs
        self.dailyDoseUgX10 = dailyDoseUgX10
        self.patientBolusDoseUgX10 = patientBolusDoseUgX10
        self.patientBolusLockoutMin = patientBolusLockoutMin
        self.patientBolusMaxPerDay = patientBolusMaxPerDay
        self.mode = mode
        self.flexSteps = flexSteps
        self.periodicBoluses = periodicBoluses
    }

    public init(_ view: DoseProgramView) {
        self.init(
            deviceTimeMs: view.deviceTimeMs, dailyDoseUgX10: view.dailyDoseUgX10,
            patientBolusDoseUgX10: view.patientBolusDoseUgX10, patientBolusLockoutMin: view.patientBolusLockoutMin,
            patientBolusMaxPerDay: view.patientBolusMaxPerDay, mode: view.mode,
            flexSteps: (0..<view.flexStepCount).map(view.flexStep),
            periodicBoluses: (0..<view.periodicBolusCount).map(view.periodicBolus))
    }

    /// Writes the payload. More than 13 steps or 24 boluses is a programming error of the caller.
    public func encode(into writer: inout PayloadWriter) {
        precondition(flexSteps.count <= Self.maximumFlexSteps && periodicBoluses.count <= Self.maximumPeriodicBoluses)
        writer.write(deviceTimeMs)
        writer.write(dailyDoseUgX10)
        writer.write(patientBolusDoseUgX10)
        writer.write(patientBolusLockoutMin)
        writer.write(patientBolusMaxPerDay)
        writer.write(mode.rawValue)
        writer.write(UInt8(flexSteps.count))
        writer.write(UInt8(periodicBoluses.count))
        writer.writeZeros(1)
        for step in flexSteps {
            writer.write(step.startMinute)
            writer.writeZeros(2)
            writer.write(step.rateUgPerDayX10)
        }
        for bolus in periodicBoluses {
            writer.write(bolus.startMinute)
            writer.write(bolus.durationMin)
            writer.write(bolus.doseUgX10)
        }
    }
}

/// Reads `REFILL` in place (payload minimum 40 bytes).
public struct RefillView: MessageView {
    @inlinable public static var messageType: MessageType { .refill }
    public let payload: UnsafeRawBufferPointer
    @inlinable public init(uncheckedPayload: UnsafeRawBufferPointer) { payload = uncheckedPayload }
    /// When the refill happened, device clock.
    @inlinable public var refillTimeMs: Int64 { payload.littleEndian(at: 0) }
    /// New drug concentration, µg/mL.
    @inlinable public var concentrationUgPerML: UInt32 { payload.littleEndian(at: 8) }
    /// Volume filled, µL.
    @inlinable public var volumeFilledUL: UInt32 { payload.littleEndian(at: 12) }
    /// What the pump calculated was left, µL.
    @inlinable public var expectedResidualUL: UInt32 { payload.littleEndian(at: 16) }
    /// What was drawn out, µL.
    @inlinable public var measuredResidualUL: UInt32 { payload.littleEndian(at: 20) }
    /// Drug lot, up to its first NUL.
    @inlinable public var drugLotBytes: UnsafeRawBufferPointer { payload.fixedASCII(at: 24, width: 16) }
}

/// `REFILL`: one refill session, with the residuals that reveal over- or under-infusion.
public struct Refill: MessagePayload {
    @inlinable public static var messageType: MessageType { .refill }
    /// Refill time, device clock.
    public var refillTimeMs: Int64
    /// New concentration, µg/mL.
    public var concentrationUgPerML: UInt32
    /// Volume filled, µL.
    public var volumeFilledUL: UInt32
    /// Expected residual, µL.
    public var expectedResidualUL: UInt32
    /// Measured residual, µL.
    public var measuredResidualUL: UInt32
    /// Drug lot.
    public var drugLot: String

    /// Creates the message from its fields.
    public init(
        refillTimeMs: Int64, concentrationUgPerML: UInt32, volumeFilledUL: UInt32, expectedResidualUL: UInt32,
        measuredResidualUL: UInt32, drugLot: String
    ) {
        self.refillTimeMs = refillTimeMs
        self.concentrationUgPerML = concentrationUgPerML
        self.volumeFilledUL = volumeFilledUL
        self.expectedResidualUL = expectedResidualUL
        self.measuredResidualUL = measuredResidualUL
        self.drugLot = drugLot
    }

    public init(_ view: RefillView) {
        self.init(
            refillTimeMs: view.refillTimeMs, concentrationUgPerML: view.concentrationUgPerML,
            volumeFilledUL: view.volumeFilledUL, expectedResidualUL: view.expectedResidualUL,
            measuredResidualUL: view.measuredResidualUL, drugLot: String(protocolASCII: view.drugLotBytes))
    }

    public func encode(into writer: inout PayloadWriter) {
        writer.write(refillTimeMs)
        writer.write(concentrationUgPerML)
        writer.write(volumeFilledUL)
        writer.write(expectedResidualUL)
        writer.write(measuredResidualUL)
        writer.writeASCII(drugLot, width: 16)
    }
}
