public import ITBProtocol

/// The clinical values the bridge computes from what the pump reports (`README.md`, "Derived
/// values", documents each formula; domain facts in the project's domain notes).
///
/// All inputs are the pump's own figures; nothing here is measured. Dates are in host time: a
/// device timestamp is shifted by the clock offset observed when it arrived.
public struct DerivedValues: Hashable, Sendable {
    /// Why the refill is due when it is.
    public enum DueReason: String, Hashable, Sendable {
        /// The low-reservoir alarm comes first.
        case lowReservoirAlarm = "low_reservoir_alarm"
        /// The drug's 180-day stability limit comes first.
        case drugStability = "drug_stability"
    }

    /// µg/day used for the flow: the programmed 24-hour total, plus the most patient boluses allowed.
    public var dailyDoseUg: Double
    /// Drug concentration, µg/mL.
    public var concentrationUgPerML: UInt32
    /// flow µL/day = daily dose µg/day × 1000 / concentration µg/mL. Nil without a concentration.
    public var flowULPerDay: Double?
    /// (volume − threshold) / flow, days; negative means the threshold is already passed.
    public var daysUntilLowReservoirAlarm: Double?
    /// When the low-reservoir alarm is expected (host time, ms).
    public var lowReservoirAlarmDateMs: Int64?
    /// Last fill + stability limit (host time, ms); nil without a known fill.
    public var stabilityLimitDateMs: Int64?
    /// min(LRA date, stability date) − margin (host time, ms).
    public var refillDueDateMs: Int64?
    /// Which limit sets the due date.
    public var refillDueReason: DueReason?

    /// The flow for a dose and a concentration; nil when the concentration is 0 (unknown).
    public static func flowULPerDay(dailyDoseUg: Double, concentrationUgPerML: UInt32) -> Double? {
        concentrationUgPerML == 0 ? nil : dailyDoseUg * 1000 / Double(concentrationUgPerML)
    }

    /// Refill discrepancy = (measured − expected residual) / (volume filled − expected residual).
    /// Negative: the pump delivered more than programmed (over-infusion); positive: less (or a
    /// stall). Nil when the denominator is 0.
    public static func refillDiscrepancy(_ refill: Refill) -> Double? {
        let denominator = Double(refill.volumeFilledUL) - Double(refill.expectedResidualUL)
        guard denominator != 0 else { return nil }
        return (Double(refill.measuredResidualUL) - Double(refill.expectedResidualUL)) / denominator
    }

    /// Computes the values from the latest reservoir and status (and program, when known).
    ///
    /// - Parameters:
    ///   - reservoir: the latest `RESERVOIR`.
    ///   - status: the latest `PUMP_STATUS` (dose and concentration), if any.
    ///   - program: the latest `DOSE_PROGRAM`, whose 24-hour total and patient-bolus limits win.
    ///   - clockOffsetMs: host time − device time when the reservoir arrived.
    ///   - configuration: margin and stability limit.
    public static func compute(
        reservoir: Reservoir, status: PumpStatus?, program: DoseProgram?, clockOffsetMs: Int64,
        configuration: BridgeConfiguration
    ) -> DerivedValues {
        var doseX10 = Double(program?.dailyDoseUgX10 ?? status?.dailyDoseUgX10 ?? 0)
        if let program, program.patientBolusDoseUgX10 > 0 {
            doseX10 += Double(program.patientBolusDoseUgX10) * Double(program.patientBolusMaxPerDay)
        }
        let dose = doseX10 / 10
        let concentration = status?.concentrationUgPerML ?? 0
        let flow = flowULPerDay(dailyDoseUg: dose, concentrationUgPerML: concentration)
        let dayMs = 86_400_000.0
        let nowHostMs = reservoir.deviceTimeMs == 0 ? nil : reservoir.deviceTimeMs + clockOffsetMs

        var days: Double?
        var lraDate: Int64?
        if let flow, flow > 0 {
            let volume = Double(reservoir.volumeULX10) / 10
            let d = (volume - Double(reservoir.lowReservoirThresholdUL)) / flow
            days = d
            if let nowHostMs { lraDate = nowHostMs + Int64((d * dayMs).rounded()) }
        }
        var stability: Int64?
        if reservoir.lastRefillTimeMs != 0 {
            stability = reservoir.lastRefillTimeMs + clockOffsetMs + Int64((configuration.stabilityLimitDays * dayMs).rounded())
        }
        var due: Int64?
        var reason: DueReason?
        switch (lraDate, stability) {
        case let (lra?, stab?):
            if lra <= stab { (due, reason) = (lra, .lowReservoirAlarm) } else { (due, reason) = (stab, .drugStability) }
        case let (lra?, nil): (due, reason) = (lra, .lowReservoirAlarm)
        case let (nil, stab?): (due, reason) = (stab, .drugStability)
        case (nil, nil): break
        }
        if let d = due { due = d - Int64((configuration.refillMarginDays * dayMs).rounded()) }
        return DerivedValues(
            dailyDoseUg: dose, concentrationUgPerML: concentration, flowULPerDay: flow,
            daysUntilLowReservoirAlarm: days, lowReservoirAlarmDateMs: lraDate, stabilityLimitDateMs: stability,
            refillDueDateMs: due, refillDueReason: reason)
    }
}
