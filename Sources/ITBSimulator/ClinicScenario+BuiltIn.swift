extension ClinicScenario {
    /// The built-in clinic scenarios, `clinic-day` and `clinic-week`; scripts can rely on these
    /// names. Figures follow `shared/domain.md`: 20 and 40 mL reservoirs, 500/1000/2000 µg/mL,
    /// 90–800 µg/day, refills every one to five months, LRA at 2 mL, delivery bias around +2.5 %.
    public static let builtIn: [ClinicScenario] = [clinicDay, clinicWeek]

    /// One programmer, 11 pumps of two manufacturers, 12 visits from 08:30 to 15:50.
    static let clinicDay: ClinicScenario = {
        let flowonix: UInt16 = 2  // manufacturer_code 1 (Medtronic) is the default
        let pumps: [Pump] = [
            // 250 µL/day for 120 days: a routine refill, −750 µL found (2.5 % bias).
            Pump(key: "P01", serial: "NGP104857H", implantAtDay: -1460, concentrationUgPerML: 2000, dailyDoseUg: 500,
                 lastFillAtDay: -120),
            // 200 µL/day for 150 days; 2.5 mL less drawn out than calculated; seen again at 15:30.
            Pump(key: "P02", serial: "NGP118302H", implantAtDay: -800, concentrationUgPerML: 2000, dailyDoseUg: 400,
                 lastFillAtDay: -150),
            // 20 mL at 1000 µg/mL, 300 µg/day: refilled at 2000 µg/mL, which halves the flow.
            Pump(key: "P03", manufacturerCode: flowonix, model: "Prometra II", serial: "PR-20573", capacityUL: 20_000,
                 implantAtDay: -610, concentrationUgPerML: 1000, dailyDoseUg: 300, lastFillAtDay: -55, deliveryBias: 0.01),
            // Spasticity not controlled: titrated up from 350 to 425 µg/day.
            Pump(key: "P04", serial: "NGP121977H", implantAtDay: -420, concentrationUgPerML: 2000, dailyDoseUg: 350,
                 lastFillAtDay: -40),
            // Battery at ERI for 12 days: replacement to plan.
            Pump(key: "P05", serial: "NGP087415H", capacityUL: 20_000, implantAtDay: -2410, eriAtDay: -12,
                 concentrationUgPerML: 1000, dailyDoseUg: 180, lastFillAtDay: -30),
            // A child (cerebral palsy), 95 µg/day at 500 µg/mL: below the 2 mL LRA since last night.
            Pump(key: "P06", manufacturerCode: flowonix, model: "Prometra II", serial: "PR-31190", capacityUL: 20_000,
                 implantAtDay: -300, concentrationUgPerML: 500, dailyDoseUg: 95, lastFillAtDay: -95),
            // Switched from simple continuous to flex dosing.
            Pump(key: "P07", serial: "NGP130552H", implantAtDay: -200, concentrationUgPerML: 1000, dailyDoseUg: 600,
                 lastFillAtDay: -28),
            // Routine interrogation, nothing to do.
            Pump(key: "P08", serial: "NGP099120H", implantAtDay: -1900, concentrationUgPerML: 2000, dailyDoseUg: 250,
                 lastFillAtDay: -30),
            Pump(key: "P09", manufacturerCode: flowonix, model: "Prometra II", serial: "PR-40218", capacityUL: 20_000,
                 implantAtDay: -1000, concentrationUgPerML: 1000, dailyDoseUg: 150, lastFillAtDay: -110, deliveryBias: 0.02),
            // 800 µg/day and drowsy: refilled, then titrated down to 700.
            Pump(key: "P10", serial: "NGP112640H", implantAtDay: -950, concentrationUgPerML: 2000, dailyDoseUg: 800,
                 lastFillAtDay: -85),
            // A flow fault raised this morning, cleared after the catheter access port check.
            Pump(key: "P11", serial: "NGP125503H", capacityUL: 20_000, implantAtDay: -500, concentrationUgPerML: 1000,
                 dailyDoseUg: 220, lastFillAtDay: -45),
        ]
        let visits: [Visit] = [
            Visit(day: 0, time: "08:30", pump: "P01", actions: [.init("refill", volumeFilledUL: 40_000, drugLot: "BAC2611-A07")]),
            Visit(day: 0, time: "09:00", pump: "P02", actions: [.init("refill", volumeFilledUL: 40_000, residualDiscrepancyUL: -2500,
                                                                      drugLot: "BAC2611-A07")]),
            Visit(day: 0, time: "09:30", pump: "P03", actions: [.init("refill", concentrationUgPerML: 2000, volumeFilledUL: 20_000,
                                                                      drugLot: "BAC2609-C12")]),
            Visit(day: 0, time: "10:00", pump: "P04", actions: [.init("dose_change", dailyDoseUg: 425)]),
            Visit(day: 0, time: "10:30", pump: "P05"),
            Visit(day: 0, time: "11:00", pump: "P06", actions: [.init("refill", volumeFilledUL: 20_000, drugLot: "BAC2610-B03")]),
            Visit(day: 0, time: "11:30", pump: "P07", actions: [.init("flex_dosing", dailyDoseUg: 650)]),
            Visit(day: 0, time: "13:00", pump: "P08"),
            Visit(day: 0, time: "13:30", pump: "P09", actions: [.init("refill", volumeFilledUL: 20_000, drugLot: "BAC2611-A07")]),
            Visit(day: 0, time: "14:00", pump: "P10", actions: [.init("refill", volumeFilledUL: 40_000, drugLot: "BAC2611-A07"),
                                                               .init("dose_change", dailyDoseUg: 700)]),
            Visit(day: 0, time: "14:30", pump: "P11", actions: [
                .init("alarm", code: "flow_fault", priority: "high", detail: "flow fault: catheter check", hoursAgo: 5),
                .init("clear_alarm", code: "flow_fault")]),
            Visit(day: 0, time: "15:30", pump: "P02"),
        ]
        return ClinicScenario(name: "clinic-day",
                              description: "a clinic day: 11 pumps (2 makers), 12 visits; refills (one 2.5 mL short, one 1000→2000 µg/mL), titrations, ERI, alarms",
                              pumps: pumps, visits: visits)
    }()

    /// One programmer, 21 pumps, 30 visits over five days; eight pumps are seen on two or three days.
    static let clinicWeek: ClinicScenario = {
        let flowonix: UInt16 = 2
        func sm(_ key: String, _ serial: String, ml: Int = 40, implant: Double = -900, eri: Double? = nil,
                _ concentration: Int, _ dose: Double, fill: Double) -> Pump {
            Pump(key: key, serial: serial, capacityUL: ml * 1000, implantAtDay: implant, eriAtDay: eri,
                 concentrationUgPerML: concentration, dailyDoseUg: dose, lastFillAtDay: fill)
        }
        func pr(_ key: String, _ serial: String, implant: Double = -700, _ concentration: Int, _ dose: Double, fill: Double) -> Pump {
            Pump(key: key, manufacturerCode: flowonix, model: "Prometra II", serial: serial, capacityUL: 20_000, implantAtDay: implant,
                 concentrationUgPerML: concentration, dailyDoseUg: dose, lastFillAtDay: fill, deliveryBias: 0.015)
        }
        let pumps: [Pump] = [
            sm("W01", "NGP140211H", 2000, 450, fill: -140),
            sm("W02", "NGP140388H", ml: 20, 1000, 150, fill: -100),
            pr("W03", "PR-50112", 2000, 300, fill: -20),
            sm("W04", "NGP072904H", implant: -2300, eri: 1.5, 2000, 250, fill: -50),
            pr("W05", "PR-50240", 500, 120, fill: -70),
            sm("W06", "NGP141002H", 1000, 200, fill: -30),
            sm("W07", "NGP141517H", 2000, 600, fill: -115),
            sm("W08", "NGP142230H", 2000, 520, fill: -125),
            pr("W09", "PR-50377", 2000, 420, fill: -40),
            sm("W10", "NGP142871H", ml: 20, 500, 110, fill: -83),
            sm("W11", "NGP143005H", 2000, 350, fill: -60),
            pr("W12", "PR-50419", 1000, 200, fill: -80),
            sm("W13", "NGP143662H", 2000, 400, fill: -50),
            sm("W14", "NGP144120H", 1000, 300, fill: -110),
            sm("W15", "NGP144398H", ml: 20, 1000, 90, fill: -45),
            sm("W16", "NGP069431H", ml: 20, implant: -2500, eri: -60, 1000, 160, fill: -100),
            pr("W17", "PR-50533", 2000, 250, fill: -130),
            sm("W18", "NGP145007H", 2000, 450, fill: -45),
            sm("W19", "NGP145561H", 2000, 700, fill: -95),
            sm("W20", "NGP146010H", 1000, 500, fill: -70),
            pr("W21", "PR-50684", 1000, 180, fill: -20),
        ]
        func refill(_ ml: Double, _ concentration: Int? = nil, off discrepancy: Double? = nil) -> Action {
            .init("refill", concentrationUgPerML: concentration, volumeFilledUL: ml * 1000, residualDiscrepancyUL: discrepancy)
        }
        func dose(_ ug: Double) -> Action { .init("dose_change", dailyDoseUg: ug) }
        let visits: [Visit] = [
            // Monday
            Visit(day: 0, time: "08:30", pump: "W01", actions: [refill(40)]),
            Visit(day: 0, time: "09:00", pump: "W02"),
            Visit(day: 0, time: "09:30", pump: "W03", actions: [dose(350)]),
            Visit(day: 0, time: "10:00", pump: "W04"),
            Visit(day: 0, time: "10:30", pump: "W05", actions: [refill(20, 1000)]),
            Visit(day: 0, time: "11:00", pump: "W06"),
            // Tuesday
            Visit(day: 1, time: "08:30", pump: "W07", actions: [refill(40)]),
            Visit(day: 1, time: "09:00", pump: "W08", actions: [refill(40, off: -2500)]),
            Visit(day: 1, time: "09:30", pump: "W03", actions: [dose(375)]),
            Visit(day: 1, time: "10:00", pump: "W09", actions: [.init("flex_dosing", dailyDoseUg: 480)]),
            Visit(day: 1, time: "10:30", pump: "W10", actions: [refill(20)]),
            Visit(day: 1, time: "11:00", pump: "W11"),
            // Wednesday
            Visit(day: 2, time: "08:30", pump: "W12", actions: [refill(20)]),
            Visit(day: 2, time: "09:00", pump: "W13", actions: [
                .init("alarm", code: "flow_fault", priority: "high", detail: "flow fault: catheter check", hoursAgo: 3),
                .init("clear_alarm", code: "flow_fault")]),
            Visit(day: 2, time: "09:30", pump: "W01"),
            Visit(day: 2, time: "10:00", pump: "W14", actions: [refill(40)]),
            Visit(day: 2, time: "10:30", pump: "W06", actions: [dose(240)]),
            Visit(day: 2, time: "11:00", pump: "W15"),
            // Thursday
            Visit(day: 3, time: "08:30", pump: "W02", actions: [refill(20)]),
            Visit(day: 3, time: "09:00", pump: "W16", actions: [refill(20)]),
            Visit(day: 3, time: "09:30", pump: "W04"),
            Visit(day: 3, time: "10:00", pump: "W05"),
            Visit(day: 3, time: "10:30", pump: "W17", actions: [refill(20)]),
            Visit(day: 3, time: "11:00", pump: "W18", actions: [dose(500)]),
            // Friday
            Visit(day: 4, time: "08:30", pump: "W08"),
            Visit(day: 4, time: "09:00", pump: "W19", actions: [refill(40)]),
            Visit(day: 4, time: "09:30", pump: "W03", actions: [dose(400)]),
            Visit(day: 4, time: "10:00", pump: "W20", actions: [refill(40, 2000)]),
            Visit(day: 4, time: "10:30", pump: "W21"),
            Visit(day: 4, time: "11:00", pump: "W10"),
        ]
        return ClinicScenario(name: "clinic-week",
                              description: "a clinic week: 21 pumps, 30 visits over 5 days, 8 pumps seen on several days; ERI reached mid-week",
                              pumps: pumps, visits: visits)
    }()
}
