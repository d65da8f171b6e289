import ITBBridge
import ITBProtocol
import Testing

/// The derived clinical values against figures computed by hand from the domain notes:
/// flow µL/day = dose µg/day × 1000 / concentration µg/mL; days to LRA = (reservoir − threshold) / flow;
/// refill due = min(LRA date, last fill + 180 d) − margin; discrepancy = (measured − expected) / (filled − expected).
@Suite("Derived values")
struct DerivedValuesTests {
    private static let dayMs: Int64 = 86_400_000
    /// 2025-06-15T15:06:40Z, the device's clock "now".
    private static let t0: Int64 = 1_750_000_000_000

    private func reservoir(
        volumeUL: Double, capacityUL: UInt32, thresholdUL: UInt32 = 2000, deviceTimeMs: Int64 = t0, lastRefillMs: Int64
    ) -> Reservoir {
        Reservoir(
            deviceTimeMs: deviceTimeMs, lastRefillTimeMs: lastRefillMs, volumeULX10: UInt32((volumeUL * 10).rounded()),
            capacityUL: capacityUL, lowReservoirThresholdUL: thresholdUL, deliveredSinceRefillULX10: 0, volumeSource: .calculated)
    }

    private func status(doseUgPerDay: UInt32, concentration: UInt32) -> PumpStatus {
        PumpStatus(
            deviceTimeMs: Self.t0, dailyDoseUgX10: doseUgPerDay * 10, concentrationUgPerML: concentration, activeAlarmMask: 0,
            pumpState: .infusing, dosingMode: .simpleContinuous, linkQualityPct: 90)
    }

    private func compute(
        _ reservoir: Reservoir, _ status: PumpStatus?, program: DoseProgram? = nil, offsetMs: Int64 = 0,
        configuration: BridgeConfiguration = .init()
    ) -> DerivedValues {
        DerivedValues.compute(reservoir: reservoir, status: status, program: program, clockOffsetMs: offsetMs, configuration: configuration)
    }

    // MARK: the domain notes' example: stability limit first

    @Test("a 40 mL pump at 2000 µg/mL and 400 µg/day flows 200 µL/day and reaches the LRA in 190 days")
    func fortyMLExampleFlowAndDays() throws {
        let values = compute(reservoir(volumeUL: 40_000.0, capacityUL: 40_000, lastRefillMs: Self.t0),
                             status(doseUgPerDay: 400, concentration: 2000))
        #expect(values.dailyDoseUg == 400)
        #expect(values.concentrationUgPerML == 2000)
        // 400 µg/day × 1000 / 2000 µg/mL
        #expect(values.flowULPerDay == 200)
        // (40 000 µL − 2 000 µL) / 200 µL/day
        #expect(values.daysUntilLowReservoirAlarm == 190)
        #expect(values.lowReservoirAlarmDateMs == Self.t0 + 190 * Self.dayMs)
        // Filled just now: the stability limit (fill + 180 d) comes before the LRA (+190 d).
        #expect(values.stabilityLimitDateMs == Self.t0 + 180 * Self.dayMs)
        #expect(values.refillDueDateMs == Self.t0 + 180 * Self.dayMs - 4 * Self.dayMs)
        #expect(values.refillDueReason == .drugStability)
    }

    @Test("for that pump the 180-day stability limit comes first: refill due 180 − 4 days after the fill, for drug stability")
    func fortyMLExampleStabilityFirst() throws {
        let filled = Self.t0 - 10 * Self.dayMs
        // Ten days after a fill the reservoir holds 40 000 − 10 × 200 = 38 000 µL: 180 days to the LRA.
        let values = compute(reservoir(volumeUL: 38_000.0, capacityUL: 40_000, lastRefillMs: filled),
                             status(doseUgPerDay: 400, concentration: 2000))
        #expect(values.daysUntilLowReservoirAlarm == 180)
        let lra = Self.t0 + 180 * Self.dayMs
        let stability = filled + 180 * Self.dayMs
        #expect(values.lowReservoirAlarmDateMs == lra)
        #expect(values.stabilityLimitDateMs == stability)
        #expect(stability < lra)
        #expect(values.refillDueDateMs == stability - 4 * Self.dayMs)
        #expect(values.refillDueDateMs == Self.t0 + 166 * Self.dayMs)
        #expect(values.refillDueReason == .drugStability)
        #expect(values.refillDueReason?.rawValue == "drug_stability")
    }

    // MARK: low-reservoir alarm first

    @Test("a 20 mL pump at 500 µg/mL and 500 µg/day flows 1000 µL/day, reaches the LRA in 18 days, and that sets the refill date")
    func twentyMLLowReservoirFirst() throws {
        let values = compute(reservoir(volumeUL: 20_000.0, capacityUL: 20_000, lastRefillMs: Self.t0),
                             status(doseUgPerDay: 500, concentration: 500))
        #expect(values.flowULPerDay == 1000)
        #expect(values.daysUntilLowReservoirAlarm == 18)
        let lra = Self.t0 + 18 * Self.dayMs
        #expect(values.lowReservoirAlarmDateMs == lra)
        #expect(values.stabilityLimitDateMs == Self.t0 + 180 * Self.dayMs)
        #expect(values.refillDueDateMs == lra - 4 * Self.dayMs)
        #expect(values.refillDueReason == .lowReservoirAlarm)
        #expect(values.refillDueReason?.rawValue == "low_reservoir_alarm")
    }

    @Test("the pump's programmed LRA threshold is used, not the 2 mL default")
    func programmedThreshold() throws {
        let values = compute(reservoir(volumeUL: 20_000.0, capacityUL: 20_000, thresholdUL: 4000, lastRefillMs: Self.t0),
                             status(doseUgPerDay: 500, concentration: 500))
        // (20 000 − 4 000) / 1 000
        #expect(values.daysUntilLowReservoirAlarm == 16)
        #expect(values.lowReservoirAlarmDateMs == Self.t0 + 16 * Self.dayMs)
    }

    @Test("tenths of a microlitre count: 40 000.5 µL at 200 µL/day is 190.0025 days")
    func tenthsOfMicrolitres() throws {
        let values = compute(reservoir(volumeUL: 40_000.5, capacityUL: 40_000, lastRefillMs: Self.t0),
                             status(doseUgPerDay: 400, concentration: 2000))
        let days = try #require(values.daysUntilLowReservoirAlarm)
        #expect(abs(days - 190.0025) < 1e-9)
        // 0.0025 day = 216 000 ms
        #expect(values.lowReservoirAlarmDateMs == Self.t0 + 190 * Self.dayMs + 216_000)
    }

    @Test("a reservoir already below its threshold gives negative days and an LRA date in the past")
    func belowThreshold() throws {
        let values = compute(reservoir(volumeUL: 1_500.0, capacityUL: 20_000, lastRefillMs: Self.t0 - 100 * Self.dayMs),
                             status(doseUgPerDay: 400, concentration: 2000))
        // (1 500 − 2 000) / 200 = −2.5 days
        #expect(values.daysUntilLowReservoirAlarm == -2.5)
        let lra = Self.t0 - 2 * Self.dayMs - Self.dayMs / 2
        #expect(values.lowReservoirAlarmDateMs == lra)
        #expect(values.refillDueDateMs == lra - 4 * Self.dayMs)
        #expect(values.refillDueReason == .lowReservoirAlarm)
    }

    // MARK: dose program

    @Test("patient boluses are counted at the most allowed per day")
    func patientBolusesAtMaximum() throws {
        // 400 µg/day programmed + 4 boluses × 25 µg = 500 µg/day → 500 × 1000 / 2000 = 250 µL/day.
        let program = DoseProgram(
            deviceTimeMs: Self.t0, dailyDoseUgX10: 4000, patientBolusDoseUgX10: 250, patientBolusLockoutMin: 180,
            patientBolusMaxPerDay: 4, mode: .simpleContinuous, flexSteps: [], periodicBoluses: [])
        let values = compute(reservoir(volumeUL: 40_000.0, capacityUL: 40_000, lastRefillMs: Self.t0),
                             status(doseUgPerDay: 400, concentration: 2000), program: program)
        #expect(values.dailyDoseUg == 500)
        #expect(values.flowULPerDay == 250)
        // 38 000 / 250 = 152 days: now the LRA comes before the stability limit.
        #expect(values.daysUntilLowReservoirAlarm == 152)
        #expect(values.lowReservoirAlarmDateMs == Self.t0 + 152 * Self.dayMs)
        #expect(values.refillDueDateMs == Self.t0 + 148 * Self.dayMs)
        #expect(values.refillDueReason == .lowReservoirAlarm)
    }

    @Test("a program that allows no patient bolus adds nothing, whatever its maximum per day")
    func noPatientBolusAllowed() throws {
        let program = DoseProgram(
            deviceTimeMs: Self.t0, dailyDoseUgX10: 4000, patientBolusDoseUgX10: 0, patientBolusLockoutMin: 0,
            patientBolusMaxPerDay: 6, mode: .simpleContinuous, flexSteps: [], periodicBoluses: [])
        let values = compute(reservoir(volumeUL: 40_000.0, capacityUL: 40_000, lastRefillMs: Self.t0),
                             status(doseUgPerDay: 400, concentration: 2000), program: program)
        #expect(values.dailyDoseUg == 400)
        #expect(values.flowULPerDay == 200)
    }

    @Test("a flex program's 24-hour total is the dose, over the status's figure")
    func flexProgramTotalWins() throws {
        // Flex: 300 µg/day by night, 600 µg/day by day; the programmer reports the 24-hour total, 450 µg.
        let program = DoseProgram(
            deviceTimeMs: Self.t0, dailyDoseUgX10: 4500, patientBolusDoseUgX10: 0, patientBolusLockoutMin: 0,
            patientBolusMaxPerDay: 0, mode: .flex,
            flexSteps: [.init(startMinute: 0, rateUgPerDayX10: 3000), .init(startMinute: 720, rateUgPerDayX10: 6000)],
            periodicBoluses: [])
        let values = compute(reservoir(volumeUL: 20_000.0, capacityUL: 20_000, lastRefillMs: Self.t0),
                             status(doseUgPerDay: 400, concentration: 1000), program: program)
        #expect(values.dailyDoseUg == 450)
        // 450 × 1000 / 1000 = 450 µL/day; (20 000 − 2 000) / 450 = 40 days.
        #expect(values.flowULPerDay == 450)
        #expect(values.daysUntilLowReservoirAlarm == 40)
    }

    // MARK: unknown inputs

    @Test("a concentration of 0 (unknown) gives no flow and no LRA; the stability limit alone sets the refill date")
    func zeroConcentration() throws {
        let filled = Self.t0 - 30 * Self.dayMs
        let values = compute(reservoir(volumeUL: 20_000.0, capacityUL: 20_000, lastRefillMs: filled),
                             status(doseUgPerDay: 500, concentration: 0))
        #expect(values.flowULPerDay == nil)
        #expect(values.daysUntilLowReservoirAlarm == nil)
        #expect(values.lowReservoirAlarmDateMs == nil)
        #expect(values.stabilityLimitDateMs == filled + 180 * Self.dayMs)
        #expect(values.refillDueDateMs == filled + 176 * Self.dayMs)
        #expect(values.refillDueReason == .drugStability)
        #expect(DerivedValues.flowULPerDay(dailyDoseUg: 500, concentrationUgPerML: 0) == nil)
    }

    @Test("without any status the concentration is unknown and there is no flow")
    func noStatus() throws {
        let values = compute(reservoir(volumeUL: 20_000.0, capacityUL: 20_000, lastRefillMs: Self.t0), nil)
        #expect(values.concentrationUgPerML == 0)
        #expect(values.flowULPerDay == nil)
        #expect(values.refillDueReason == .drugStability)
    }

    @Test("without a known fill or flow there is no refill date")
    func nothingKnown() throws {
        let values = compute(reservoir(volumeUL: 20_000.0, capacityUL: 20_000, lastRefillMs: 0), nil)
        #expect(values.stabilityLimitDateMs == nil)
        #expect(values.refillDueDateMs == nil)
        #expect(values.refillDueReason == nil)
    }

    @Test("without a device time the days are known but the LRA date is not")
    func noDeviceTime() throws {
        let values = compute(reservoir(volumeUL: 20_000.0, capacityUL: 20_000, deviceTimeMs: 0, lastRefillMs: Self.t0),
                             status(doseUgPerDay: 500, concentration: 500))
        #expect(values.daysUntilLowReservoirAlarm == 18)
        #expect(values.lowReservoirAlarmDateMs == nil)
        #expect(values.refillDueDateMs == Self.t0 + 176 * Self.dayMs)
        #expect(values.refillDueReason == .drugStability)
    }

    // MARK: clock offset and configuration

    @Test("the clock offset (host − device) shifts every date into host time", arguments: [Int64(5_400_000), -7_200_000])
    func clockOffsetShiftsDates(offsetMs: Int64) throws {
        let filled = Self.t0 - 20 * Self.dayMs
        let values = compute(reservoir(volumeUL: 20_000.0, capacityUL: 20_000, lastRefillMs: filled),
                             status(doseUgPerDay: 500, concentration: 500), offsetMs: offsetMs)
        #expect(values.daysUntilLowReservoirAlarm == 18)
        #expect(values.lowReservoirAlarmDateMs == Self.t0 + offsetMs + 18 * Self.dayMs)
        #expect(values.stabilityLimitDateMs == filled + offsetMs + 180 * Self.dayMs)
        #expect(values.refillDueDateMs == Self.t0 + offsetMs + 14 * Self.dayMs)
    }

    @Test("the margin and the stability limit come from the configuration")
    func configuredMarginAndStability() throws {
        var configuration = BridgeConfiguration()
        configuration.refillMarginDays = 3
        configuration.stabilityLimitDays = 150
        let values = compute(reservoir(volumeUL: 40_000.0, capacityUL: 40_000, lastRefillMs: Self.t0),
                             status(doseUgPerDay: 400, concentration: 2000), configuration: configuration)
        #expect(values.stabilityLimitDateMs == Self.t0 + 150 * Self.dayMs)
        #expect(values.refillDueDateMs == Self.t0 + 147 * Self.dayMs)
        #expect(values.refillDueReason == .drugStability)

        configuration.refillMarginDays = 4.5
        let half = compute(reservoir(volumeUL: 20_000.0, capacityUL: 20_000, lastRefillMs: Self.t0),
                           status(doseUgPerDay: 500, concentration: 500), configuration: configuration)
        #expect(half.refillDueDateMs == Self.t0 + 18 * Self.dayMs - 4 * Self.dayMs - Self.dayMs / 2)
    }

    // MARK: refill discrepancy

    private func refill(filled: UInt32, expected: UInt32, measured: UInt32) -> Refill {
        Refill(refillTimeMs: Self.t0, concentrationUgPerML: 2000, volumeFilledUL: filled, expectedResidualUL: expected,
               measuredResidualUL: measured, drugLot: "LOT-1")
    }

    @Test("less drawn out than expected is negative: over-infusion")
    func discrepancyOverInfusion() throws {
        // (1 000 − 2 000) / (20 000 − 2 000) = −1/18
        let value = try #require(DerivedValues.refillDiscrepancy(refill(filled: 20_000, expected: 2_000, measured: 1_000)))
        #expect(value < 0)
        #expect(abs(value - (-1.0 / 18.0)) < 1e-12)
    }

    @Test("more drawn out than expected is positive: under-delivery or stall")
    func discrepancyUnderDelivery() throws {
        // (4 700 − 2 000) / (20 000 − 2 000) = 0.15
        let value = try #require(DerivedValues.refillDiscrepancy(refill(filled: 20_000, expected: 2_000, measured: 4_700)))
        #expect(abs(value - 0.15) < 1e-12)
    }

    @Test("the expected residual drawn out exactly is no discrepancy")
    func discrepancyZero() {
        #expect(DerivedValues.refillDiscrepancy(refill(filled: 20_000, expected: 2_000, measured: 2_000)) == 0)
    }

    @Test("a fill equal to the expected residual has no discrepancy (denominator 0)")
    func discrepancyZeroDenominator() {
        #expect(DerivedValues.refillDiscrepancy(refill(filled: 2_000, expected: 2_000, measured: 1_500)) == nil)
    }
}
