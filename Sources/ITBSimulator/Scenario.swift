import Foundation

/// A simulated pump's situation and what happens to it, in pump time. Built-in scenarios are in
/// ``Scenario/builtIn``; others load from JSON with the same field names (snake_case).
public struct Scenario: Codable, Hashable, Sendable {
    /// The pump at the start.
    public struct Pump: Codable, Hashable, Sendable {
        /// Reservoir capacity, µL (20 000 or 40 000).
        public var capacityUL: Int = 40_000
        /// Reservoir volume at the start, µL.
        public var volumeUL: Double = 30_000
        /// Drug concentration, µg/mL.
        public var concentrationUgPerML: Int = 2000
        /// Programmed daily dose, µg/day.
        public var dailyDoseUg: Double = 500
        /// Actual delivery relative to programmed (0.025: 2.5 % more than the pump believes).
        public var deliveryBias: Double = 0.025
        /// Low-reservoir alarm threshold, µL.
        public var lowReservoirThresholdUL: Int = 2000
        /// Days since the last refill at the start.
        public var lastRefillDaysAgo: Double = 10
        /// Battery: ok, eri, eos.
        public var battery: String = "ok"
        /// Pump serial.
        public var serial: String = "PUMP-7731"
        /// Pump model.
        public var model: String = "SynchroMed II"

        enum CodingKeys: String, CodingKey {
            case capacityUL = "capacity_ul", volumeUL = "volume_ul", concentrationUgPerML = "concentration_ug_per_ml"
            case dailyDoseUg = "daily_dose_ug", deliveryBias = "delivery_bias"
            case lowReservoirThresholdUL = "low_reservoir_threshold_ul", lastRefillDaysAgo = "last_refill_days_ago"
            case battery, serial, model
        }

        /// Defaults for every field.
        public init() {}

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = Pump()
            capacityUL = try c.decodeIfPresent(Int.self, forKey: .capacityUL) ?? d.capacityUL
            volumeUL = try c.decodeIfPresent(Double.self, forKey: .volumeUL) ?? d.volumeUL
            concentrationUgPerML = try c.decodeIfPresent(Int.self, forKey: .concentrationUgPerML) ?? d.concentrationUgPerML
            dailyDoseUg = try c.decodeIfPresent(Double.self, forKey: .dailyDoseUg) ?? d.dailyDoseUg
            deliveryBias = try c.decodeIfPresent(Double.self, forKey: .deliveryBias) ?? d.deliveryBias
            lowReservoirThresholdUL = try c.decodeIfPresent(Int.self, forKey: .lowReservoirThresholdUL) ?? d.lowReservoirThresholdUL
            lastRefillDaysAgo = try c.decodeIfPresent(Double.self, forKey: .lastRefillDaysAgo) ?? d.lastRefillDaysAgo
            battery = try c.decodeIfPresent(String.self, forKey: .battery) ?? d.battery
            serial = try c.decodeIfPresent(String.self, forKey: .serial) ?? d.serial
            model = try c.decodeIfPresent(String.self, forKey: .model) ?? d.model
        }
    }

    /// Something that happens at a moment of pump time.
    public struct Event: Codable, Hashable, Sendable {
        /// When, in days of pump time from the start.
        public var atDay: Double
        /// `dose_change`, `flex_dosing`, `refill`, `eri`, `eos`, `alarm`, `clear_alarm`, `unplug`,
        /// `clock_drift`, `noise`, `battery_reset`, `stop`.
        public var action: String
        /// New daily dose, µg/day (`dose_change`, `flex_dosing`).
        public var dailyDoseUg: Double?
        /// New concentration, µg/mL (`refill`).
        public var concentrationUgPerML: Int?
        /// Volume filled, µL (`refill`).
        public var volumeFilledUL: Double?
        /// Alarm code name or raw number (`alarm`): `motor_stall`, `empty_reservoir`, `66`…
        public var code: String?
        /// Alarm priority (`alarm`): high, medium, low, info.
        public var priority: String?
        /// Seconds of real time the programmer stays unplugged (`unplug`).
        public var forSeconds: Double?
        /// Device clock drift, seconds per day of pump time (`clock_drift`).
        public var driftSecondsPerDay: Double?
        /// Bit-error rate on the line (`noise`).
        public var bitErrorRate: Double?
        /// Garbage bursts per day of pump time (`noise`).
        public var garbageBurstsPerDay: Double?
        /// Free text for alarms.
        public var detail: String?

        enum CodingKeys: String, CodingKey {
            case atDay = "at_day", action, dailyDoseUg = "daily_dose_ug", concentrationUgPerML = "concentration_ug_per_ml"
            case volumeFilledUL = "volume_filled_ul", code, priority, forSeconds = "for_seconds"
            case driftSecondsPerDay = "drift_seconds_per_day", bitErrorRate = "bit_error_rate"
            case garbageBurstsPerDay = "garbage_bursts_per_day", detail
        }

        /// Creates an event.
        public init(atDay: Double, action: String, dailyDoseUg: Double? = nil, concentrationUgPerML: Int? = nil,
                    volumeFilledUL: Double? = nil, code: String? = nil, priority: String? = nil, forSeconds: Double? = nil,
                    driftSecondsPerDay: Double? = nil, bitErrorRate: Double? = nil, garbageBurstsPerDay: Double? = nil,
                    detail: String? = nil) {
            self.atDay = atDay
            self.action = action
            self.dailyDoseUg = dailyDoseUg
            self.concentrationUgPerML = concentrationUgPerML
            self.volumeFilledUL = volumeFilledUL
            self.code = code
            self.priority = priority
            self.forSeconds = forSeconds
            self.driftSecondsPerDay = driftSecondsPerDay
            self.bitErrorRate = bitErrorRate
            self.garbageBurstsPerDay = garbageBurstsPerDay
            self.detail = detail
        }
    }

    /// The scenario's name.
    public var name: String
    /// One line saying what it shows.
    public var description: String
    /// The pump at the start.
    public var pump: Pump
    /// How many days of pump time it runs (then the simulator keeps the final state going).
    public var durationDays: Double
    /// What happens, in any order.
    public var events: [Event]

    enum CodingKeys: String, CodingKey {
        case name, description, pump, durationDays = "duration_days", events
    }

    /// Creates a scenario.
    public init(name: String, description: String, pump: Pump = Pump(), durationDays: Double, events: [Event] = []) {
        self.name = name
        self.description = description
        self.pump = pump
        self.durationDays = durationDays
        self.events = events
    }

    /// Loads a scenario from a JSON file.
    public static func load(path: String) throws -> Scenario {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try JSONDecoder().decode(Scenario.self, from: data)
    }

    /// The built-in scenario of that name, or nil.
    public static func named(_ name: String) -> Scenario? {
        builtIn.first { $0.name == name }
    }

    /// Every built-in scenario; scripts can rely on these names.
    public static let builtIn: [Scenario] = {
        func pump(_ configure: (inout Pump) -> Void) -> Pump {
            var p = Pump()
            configure(&p)
            return p
        }
        return [
            Scenario(name: "normal", description: "40 mL pump, 500 µg/day at 2000 µg/mL, +2.5 % delivery bias: a quiet drain",
                     pump: pump { $0.volumeUL = 36_000 }, durationDays: 30),
            Scenario(name: "low-reservoir", description: "20 mL pump drains to its 2 mL low-reservoir threshold (4 mL variant: load a JSON file)",
                     pump: pump { $0.capacityUL = 20_000; $0.volumeUL = 3_000; $0.concentrationUgPerML = 500; $0.dailyDoseUg = 250 },
                     durationDays: 3),
            Scenario(name: "over-infusion", description: "silent over-infusion (+12 %) found at refill: measured residual below expected",
                     pump: pump { $0.volumeUL = 38_000; $0.lastRefillDaysAgo = 0; $0.deliveryBias = 0.12 },
                     durationDays: 125, events: [.init(atDay: 120, action: "refill", concentrationUgPerML: 2000, volumeFilledUL: 38_000)]),
            Scenario(name: "eri-eos", description: "elective replacement indicator, then end of service 90 days later",
                     pump: pump { $0.volumeUL = 38_000; $0.dailyDoseUg = 200 },
                     durationDays: 100, events: [.init(atDay: 5, action: "eri"), .init(atDay: 95, action: "eos")]),
            Scenario(name: "motor-stall", description: "critical alarm: the motor stalls, drug no longer flows",
                     pump: pump { $0.volumeUL = 30_000 }, durationDays: 4, events: [.init(atDay: 1, action: "alarm", code: "motor_stall", priority: "high", detail: "rotor stalled")]),
            Scenario(name: "battery-reset", description: "critical alarm: low-battery reset to minimum rate",
                     pump: pump { $0.volumeUL = 30_000 }, durationDays: 4, events: [.init(atDay: 1, action: "battery_reset")]),
            Scenario(name: "empty-reservoir", description: "the reservoir runs dry: low-reservoir alarm, then the critical empty-reservoir alarm",
                     pump: pump { $0.capacityUL = 20_000; $0.volumeUL = 2_600; $0.concentrationUgPerML = 500; $0.dailyDoseUg = 400 },
                     durationDays: 8),
            Scenario(name: "replug", description: "the programmer is unplugged mid-session and plugged back in (the pty goes and comes back)",
                     pump: pump { $0.volumeUL = 30_000 }, durationDays: 6,
                     events: [.init(atDay: 1, action: "alarm", code: "flow_fault", priority: "high", detail: "before unplug"),
                              .init(atDay: 2, action: "unplug", forSeconds: 2),
                              .init(atDay: 3, action: "alarm", code: "memory_error", priority: "high", detail: "after replug")]),
            Scenario(name: "dose-change", description: "a dose change, then a switch from simple continuous to flex dosing",
                     pump: pump { $0.volumeUL = 30_000 }, durationDays: 6,
                     events: [.init(atDay: 1, action: "dose_change", dailyDoseUg: 600), .init(atDay: 3, action: "flex_dosing", dailyDoseUg: 650)]),
            Scenario(name: "refill", description: "a refill with a concentration change (2000 → 1000 µg/mL)",
                     pump: pump { $0.volumeUL = 6_000 }, durationDays: 5,
                     events: [.init(atDay: 2, action: "refill", concentrationUgPerML: 1000, volumeFilledUL: 36_000)]),
            Scenario(name: "stability-limit", description: "40 mL at 2000 µg/mL and 400 µg/day: the 180-day stability limit comes before the low-reservoir alarm",
                     pump: pump { $0.volumeUL = 39_000; $0.dailyDoseUg = 400; $0.deliveryBias = 0; $0.lastRefillDaysAgo = 160 }, durationDays: 25),
            Scenario(name: "clock-drift", description: "the programmer's clock drifts by 10 minutes a day",
                     pump: pump { $0.volumeUL = 30_000 }, durationDays: 5, events: [.init(atDay: 0, action: "clock_drift", driftSecondsPerDay: 600)]),
            Scenario(name: "unknown-alarm", description: "an alarm code the host does not know (0x42), which must be kept raw",
                     pump: pump { $0.volumeUL = 30_000 }, durationDays: 3, events: [.init(atDay: 1, action: "alarm", code: "66", priority: "medium", detail: "vendor code 0x42")]),
            Scenario(name: "noisy", description: "a noisy line: bit errors at 1e-4 and garbage bursts",
                     pump: pump { $0.volumeUL = 30_000 }, durationDays: 5,
                     events: [.init(atDay: 0, action: "noise", bitErrorRate: 1e-4, garbageBurstsPerDay: 20),
                              .init(atDay: 2, action: "alarm", code: "flow_fault", priority: "high", detail: "through the noise")]),
        ]
    }()
}
