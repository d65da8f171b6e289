public import ITBProtocol
import ITBJSON

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
        let nowHostMs = TimeArithmetic.sum(TimeArithmetic.deviceTime(reservoir.deviceTimeMs), clockOffsetMs)

        var days: Double?
        var lraDate: Int64?
        if let flow, flow > 0 {
            let volume = Double(reservoir.volumeULX10) / 10
            let d = (volume - Double(reservoir.lowReservoirThresholdUL)) / flow
            days = d
            lraDate = TimeArithmetic.sum(nowHostMs, TimeArithmetic.milliseconds(days: d))
        }
        let stability = TimeArithmetic.sum(
            TimeArithmetic.sum(TimeArithmetic.deviceTime(reservoir.lastRefillTimeMs), clockOffsetMs),
            TimeArithmetic.milliseconds(days: configuration.stabilityLimitDays))
        var due: Int64?
        var reason: DueReason?
        switch (lraDate, stability) {
        case let (lra?, stab?):
            if lra <= stab { (due, reason) = (lra, .lowReservoirAlarm) } else { (due, reason) = (stab, .drugStability) }
        case let (lra?, nil): (due, reason) = (lra, .lowReservoirAlarm)
        case let (nil, stab?): (due, reason) = (stab, .drugStability)
        case (nil, nil): break
        }
        if let d = due {
            due = TimeArithmetic.sum(d, TimeArithmetic.milliseconds(days: -configuration.refillMarginDays))
            if due == nil { reason = nil }
        }
        return DerivedValues(
            dailyDoseUg: dose, concentrationUgPerML: concentration, flowULPerDay: flow,
            daysUntilLowReservoirAlarm: days, lowReservoirAlarmDateMs: lraDate, stabilityLimitDateMs: stability,
            refillDueDateMs: due, refillDueReason: reason)
    }
}

/// Time arithmetic that cannot trap: every field of a frame with valid CRCs can hold its extremes
/// (`device_time_ms` = i64 min is a firmware's "no time"), so sums and conversions that overflow,
/// and instants RFC 3339 cannot show, give nil (unknown) instead of a crash or a wrong date.
public enum TimeArithmetic {
    /// A device timestamp as a usable instant: nil when absent (0) or outside years 0001–9999.
    public static func deviceTime(_ ms: Int64) -> Int64? {
        ms != 0 && RFC3339Range.contains(ms) ? ms : nil
    }

    /// a + b, nil when either is nil, the sum overflows, or it leaves years 0001–9999.
    public static func sum(_ a: Int64?, _ b: Int64?) -> Int64? {
        guard let a, let b else { return nil }
        let (result, overflow) = a.addingReportingOverflow(b)
        return overflow || !RFC3339Range.contains(result) ? nil : result
    }

    /// a − b, nil on overflow (a clock offset between two in-range instants never overflows).
    public static func difference(_ a: Int64, _ b: Int64) -> Int64? {
        let (result, overflow) = a.subtractingReportingOverflow(b)
        return overflow ? nil : result
    }

    /// `days` as whole milliseconds, nil when not finite or beyond ±10,000 years.
    public static func milliseconds(days: Double) -> Int64? {
        let ms = (days * 86_400_000).rounded()
        guard ms.isFinite, abs(ms) <= 3.2e14 else { return nil }
        return Int64(ms)
    }

    /// The instants the API can show (RFC 3339, years 0001–9999).
    static let RFC3339Range = RFC3339.representable
}
