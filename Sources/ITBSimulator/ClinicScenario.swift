import Foundation

/// A clinic's interrogations: one programmer, many pumps, visit after visit over one or more
/// days (issue 13). Built-in ones are in ``ClinicScenario/builtIn`` (`clinic-day`, `clinic-week`);
/// others load from JSON with the same field names (snake_case), recognised by their `visits`.
///
/// Times are in *clinic time*: day 0 starts at 00:00 of the day the run starts, and a visit is at
/// `day` + `time`. Pump histories (implant, last fill, ERI) are in days relative to day 0
/// (negative: before it). Between visits clinic time jumps to the next visit: nothing is sent
/// while no pump is under the telemetry head, so nothing is lost by skipping the gap.
public struct ClinicScenario: Codable, Hashable, Sendable {
    /// One implanted pump and its history before the scenario starts.
    public struct Pump: Codable, Hashable, Sendable {
        /// The name visits use for this pump (never sent).
        public var key: String
        /// PROTOCOL.md §4: 1 Medtronic, 2 Flowonix.
        public var manufacturerCode: UInt16
        /// Pump model (≤ 16 characters).
        public var model: String
        /// Pump serial (≤ 16 characters), unique per manufacturer.
        public var serial: String
        /// Reservoir capacity, µL: 20 000 or 40 000.
        public var capacityUL: Int
        /// Implant, days from day 0 (negative).
        public var implantAtDay: Double
        /// When the battery reached ERI, days from day 0 (negative: before the scenario; positive:
        /// during it); nil: not at ERI.
        public var eriAtDay: Double?
        /// Drug concentration in the pump, µg/mL (500, 1000, 2000).
        public var concentrationUgPerML: Int
        /// Programmed daily dose, µg/day.
        public var dailyDoseUg: Double
        /// `simple_continuous` or `flex` (four steps averaging the daily dose).
        public var mode: String
        /// The last refill before the scenario, days from day 0 (negative).
        public var lastFillAtDay: Double
        /// Volume filled then, µL.
        public var lastFillVolumeUL: Double
        /// Low-reservoir alarm threshold, µL (2 000 by default; 4 000 for patients with
        /// withdrawal symptoms above 2 mL).
        public var lowReservoirThresholdUL: Int
        /// Actual delivery relative to programmed: 0.025 delivers 2.5 % more than the pump
        /// calculates, which the measured residual reveals at the next refill.
        public var deliveryBias: Double

        enum CodingKeys: String, CodingKey {
            case key, manufacturerCode = "manufacturer_code", model, serial, capacityUL = "capacity_ul"
            case implantAtDay = "implant_at_day", eriAtDay = "eri_at_day", concentrationUgPerML = "concentration_ug_per_ml"
            case dailyDoseUg = "daily_dose_ug", mode, lastFillAtDay = "last_fill_at_day", lastFillVolumeUL = "last_fill_volume_ul"
            case lowReservoirThresholdUL = "low_reservoir_threshold_ul", deliveryBias = "delivery_bias"
        }

        /// Creates a pump; the defaults are a plausible SynchroMed-like 40 mL pump.
        public init(key: String, manufacturerCode: UInt16 = 1, model: String = "SynchroMed II", serial: String,
                    capacityUL: Int = 40_000, implantAtDay: Double = -900, eriAtDay: Double? = nil,
                    concentrationUgPerML: Int = 2000, dailyDoseUg: Double = 400, mode: String = "simple_continuous",
                    lastFillAtDay: Double = -60, lastFillVolumeUL: Double? = nil, lowReservoirThresholdUL: Int = 2000,
                    deliveryBias: Double = 0.025) {
            self.key = key
            self.manufacturerCode = manufacturerCode
            self.model = model
            self.serial = serial
            self.capacityUL = capacityUL
            self.implantAtDay = implantAtDay
            self.eriAtDay = eriAtDay
            self.concentrationUgPerML = concentrationUgPerML
            self.dailyDoseUg = dailyDoseUg
            self.mode = mode
            self.lastFillAtDay = lastFillAtDay
            self.lastFillVolumeUL = lastFillVolumeUL ?? Double(capacityUL)
            self.lowReservoirThresholdUL = lowReservoirThresholdUL
            self.deliveryBias = deliveryBias
        }

        /// Decodes a pump; every field but `key` and `serial` has the default of ``init(key:manufacturerCode:model:serial:capacityUL:implantAtDay:eriAtDay:concentrationUgPerML:dailyDoseUg:mode:lastFillAtDay:lastFillVolumeUL:lowReservoirThresholdUL:deliveryBias:)``.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let capacity = try c.decodeIfPresent(Int.self, forKey: .capacityUL) ?? 40_000
            self.init(key: try c.decode(String.self, forKey: .key),
                      manufacturerCode: try c.decodeIfPresent(UInt16.self, forKey: .manufacturerCode) ?? 1,
                      model: try c.decodeIfPresent(String.self, forKey: .model) ?? "SynchroMed II",
                      serial: try c.decode(String.self, forKey: .serial),
                      capacityUL: capacity,
                      implantAtDay: try c.decodeIfPresent(Double.self, forKey: .implantAtDay) ?? -900,
                      eriAtDay: try c.decodeIfPresent(Double.self, forKey: .eriAtDay),
                      concentrationUgPerML: try c.decodeIfPresent(Int.self, forKey: .concentrationUgPerML) ?? 2000,
                      dailyDoseUg: try c.decodeIfPresent(Double.self, forKey: .dailyDoseUg) ?? 400,
                      mode: try c.decodeIfPresent(String.self, forKey: .mode) ?? "simple_continuous",
                      lastFillAtDay: try c.decodeIfPresent(Double.self, forKey: .lastFillAtDay) ?? -60,
                      lastFillVolumeUL: try c.decodeIfPresent(Double.self, forKey: .lastFillVolumeUL),
                      lowReservoirThresholdUL: try c.decodeIfPresent(Int.self, forKey: .lowReservoirThresholdUL) ?? 2000,
                      deliveryBias: try c.decodeIfPresent(Double.self, forKey: .deliveryBias) ?? 0.025)
        }
    }

    /// Something the clinician does during a visit, in the order listed, one per telemetry round.
    public struct Action: Codable, Hashable, Sendable {
        /// `refill`, `dose_change`, `flex_dosing`, `alarm` or `clear_alarm`.
        public var action: String
        /// New concentration, µg/mL (`refill`; default: unchanged).
        public var concentrationUgPerML: Int?
        /// Volume filled, µL (`refill`; default: the capacity).
        public var volumeFilledUL: Double?
        /// Measured minus expected residual, µL (`refill`; default: what the delivery bias left).
        public var residualDiscrepancyUL: Double?
        /// Drug lot (`refill`; default: derived from the pump and the day).
        public var drugLot: String?
        /// New daily dose, µg/day (`dose_change`, `flex_dosing`).
        public var dailyDoseUg: Double?
        /// Alarm code name or raw number (`alarm`, `clear_alarm`).
        public var code: String?
        /// Alarm priority (`alarm`): high, medium, low, info.
        public var priority: String?
        /// Free text (`alarm`).
        public var detail: String?
        /// The alarm's onset this many hours before the visit (`alarm`: the pump raised it before
        /// the head came over it; default 0: during the visit).
        public var hoursAgo: Double?

        enum CodingKeys: String, CodingKey {
            case action, concentrationUgPerML = "concentration_ug_per_ml", volumeFilledUL = "volume_filled_ul"
            case residualDiscrepancyUL = "residual_discrepancy_ul", drugLot = "drug_lot", dailyDoseUg = "daily_dose_ug"
            case code, priority, detail, hoursAgo = "hours_ago"
        }

        /// Creates an action.
        public init(_ action: String, concentrationUgPerML: Int? = nil, volumeFilledUL: Double? = nil,
                    residualDiscrepancyUL: Double? = nil, drugLot: String? = nil, dailyDoseUg: Double? = nil,
                    code: String? = nil, priority: String? = nil, detail: String? = nil, hoursAgo: Double? = nil) {
            self.action = action
            self.concentrationUgPerML = concentrationUgPerML
            self.volumeFilledUL = volumeFilledUL
            self.residualDiscrepancyUL = residualDiscrepancyUL
            self.drugLot = drugLot
            self.dailyDoseUg = dailyDoseUg
            self.code = code
            self.priority = priority
            self.detail = detail
            self.hoursAgo = hoursAgo
        }
    }

    /// One interrogation: the telemetry head over one pump from `time` for `minutes`.
    public struct Visit: Codable, Hashable, Sendable {
        /// Clinic day, from 0.
        public var day: Int
        /// Start, `HH:MM` clinic time.
        public var time: String
        /// The pump's ``Pump/key``.
        public var pump: String
        /// Length of the session, minutes of clinic time.
        public var minutes: Double
        /// What the clinician does, in order.
        public var actions: [Action]

        /// Creates a visit.
        public init(day: Int, time: String, pump: String, minutes: Double = 20, actions: [Action] = []) {
            self.day = day
            self.time = time
            self.pump = pump
            self.minutes = minutes
            self.actions = actions
        }

        /// Decodes a visit (`minutes` defaults to 20, `actions` to none).
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(day: try c.decode(Int.self, forKey: .day), time: try c.decode(String.self, forKey: .time),
                      pump: try c.decode(String.self, forKey: .pump),
                      minutes: try c.decodeIfPresent(Double.self, forKey: .minutes) ?? 20,
                      actions: try c.decodeIfPresent([Action].self, forKey: .actions) ?? [])
        }

        /// Clinic seconds from day 0, 00:00; nil if `time` is not `HH:MM`.
        public var startSeconds: Double? {
            let parts = time.split(separator: ":")
            guard parts.count == 2, let h = Int(parts[0]), let m = Int(parts[1]), (0..<24).contains(h), (0..<60).contains(m) else { return nil }
            return Double(day) * 86_400 + Double(h * 3600 + m * 60)
        }
    }

    /// The scenario's name.
    public var name: String
    /// One line saying what it shows.
    public var description: String
    /// Clinic seconds per real second unless `--accel` says otherwise: at 600 a 20-minute visit
    /// takes 2 s.
    public var defaultAcceleration: Double
    /// The pumps.
    public var pumps: [Pump]
    /// The visits, in any order (played in clinic-time order).
    public var visits: [Visit]

    enum CodingKeys: String, CodingKey {
        case name, description, defaultAcceleration = "default_accel", pumps, visits
    }

    /// Creates a scenario.
    public init(name: String, description: String, defaultAcceleration: Double = 600, pumps: [Pump], visits: [Visit]) {
        self.name = name
        self.description = description
        self.defaultAcceleration = defaultAcceleration
        self.pumps = pumps
        self.visits = visits
    }

    /// Decodes a scenario (`default_accel` defaults to 600).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try c.decode(String.self, forKey: .name),
                  description: try c.decodeIfPresent(String.self, forKey: .description) ?? "",
                  defaultAcceleration: try c.decodeIfPresent(Double.self, forKey: .defaultAcceleration) ?? 600,
                  pumps: try c.decode([Pump].self, forKey: .pumps), visits: try c.decode([Visit].self, forKey: .visits))
    }

    /// The visits in clinic-time order.
    public var schedule: [Visit] {
        visits.enumerated().sorted { ($0.element.startSeconds ?? 0, $0.offset) < ($1.element.startSeconds ?? 0, $1.offset) }.map(\.element)
    }

    /// Clinic seconds of all visits together: the part of the scenario that runs in real time.
    public var visitSeconds: Double { visits.reduce(0) { $0 + $1.minutes * 60 } }

    /// The problems that make this scenario unplayable (empty when it is fine): unknown pump keys,
    /// bad times, overlapping visits, duplicate keys or serials, unknown actions.
    public func problems() -> [String] {
        var out: [String] = []
        var keys = Set<String>()
        var serials = Set<String>()
        for p in pumps {
            if !keys.insert(p.key).inserted { out.append("pump key \(p.key) used twice") }
            if !serials.insert("\(p.manufacturerCode)/\(p.serial)").inserted { out.append("pump serial \(p.serial) used twice") }
            if p.serial.utf8.count > 16 || p.model.utf8.count > 16 { out.append("pump \(p.key): serial and model are at most 16 characters") }
            if p.concentrationUgPerML <= 0 { out.append("pump \(p.key): concentration must be positive") }
            if p.mode != "simple_continuous" && p.mode != "flex" { out.append("pump \(p.key): mode \(p.mode) is not simple_continuous or flex") }
        }
        var previousEnd = -Double.infinity
        for v in schedule {
            guard let start = v.startSeconds else {
                out.append("visit on day \(v.day): time \(v.time) is not HH:MM")
                continue
            }
            if !keys.contains(v.pump) { out.append("visit on day \(v.day) at \(v.time): no pump \(v.pump)") }
            if start < previousEnd { out.append("visit on day \(v.day) at \(v.time) overlaps the previous one") }
            if v.minutes <= 0 { out.append("visit on day \(v.day) at \(v.time): minutes must be positive") }
            previousEnd = start + v.minutes * 60
            for a in v.actions where !["refill", "dose_change", "flex_dosing", "alarm", "clear_alarm"].contains(a.action) {
                out.append("visit on day \(v.day) at \(v.time): unknown action \(a.action)")
            }
        }
        return out
    }

    /// Loads a scenario from a JSON file.
    public static func load(path: String) throws -> ClinicScenario {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try JSONDecoder().decode(ClinicScenario.self, from: data)
    }

    /// True when the JSON file at `path` is a clinic scenario (it has `visits`).
    public static func isClinicFile(path: String) -> Bool {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path)),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        return object["visits"] != nil
    }

    /// The built-in clinic scenario of that name, or nil.
    public static func named(_ name: String) -> ClinicScenario? {
        builtIn.first { $0.name == name }
    }
}
