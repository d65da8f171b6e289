// The JSON a message must render as, worked out from protocol-spec/PROTOCOL.md §5 and §7 alone
// (offsets, names, units) and read from the raw payload bytes, independently of ITBProtocol's
// views and ITBJSON's writer: an oracle for tests of everything that renders messages.
//
// The rules it encodes, for the fields a message has:
// - integers as JSON integers, exact to the last digit (u64 and i64 included);
// - `_x10` fields as decimals equal to value / 10, without the suffix;
// - enumerations as their lower-case name, or "unknown" with the integer in `<field>_raw`;
// - times without their `_ms` suffix: `null` when absent (0); an RFC 3339 UTC string with three
//   millisecond digits that reads back as the sent millisecond when the value lies in years
//   0001–9999; otherwise (RFC 3339 cannot write it) `null`, with the integer in `<field>_raw`
//   (§7's convention for a value that cannot be shown as what it is);
// - `char[N]` fields up to their first NUL, each byte outside 0x20–0x7E as the escape `\u00XX`
//   of that very byte (`43 50 01 58 E9` → `"CP\u0001X\u00e9"`), printable bytes as themselves.

public import ITBProtocol

/// What one JSON member must be.
public enum ExpectedValue: Sendable, Equatable, CustomStringConvertible {
    /// A JSON integer of exactly this value.
    case integer(Int128)
    /// A JSON number equal to this many tenths.
    case tenths(Int128)
    /// A `char[N]` text: these bytes, each outside 0x20–0x7E written as `\u00XX`.
    case text([UInt8])
    /// Exactly this string (names, hex, versions).
    case string(String)
    /// An enumeration value: `name`, or `"unknown"` with `<key>_raw` = `raw` when `name` is nil.
    case enumeration(name: String?, raw: Int)
    /// A time field (§7 time rule above), ms since the epoch.
    case time(Int64)
    /// `null`.
    case null
    /// A list of strings, in order.
    case strings([String])
    /// A list of objects, each with these members.
    case objects([[ExpectedField]])

    public var description: String {
        switch self {
        case .integer(let v): "\(v)"
        case .tenths(let v): "\(v)/10"
        case .text(let bytes): "text[" + bytes.map { String($0, radix: 16) }.joined(separator: " ") + "]"
        case .string(let s): String(reflecting: s)
        case .enumeration(let name, let raw): name ?? "unknown(\(raw))"
        case .time(let ms): "time(\(ms))"
        case .null: "null"
        case .strings(let list): "\(list)"
        case .objects(let list): "\(list.count) objects"
        }
    }
}

/// One JSON member a rendering must have.
public struct ExpectedField: Sendable, Equatable {
    /// The member's name.
    public var key: String
    /// Its value.
    public var value: ExpectedValue
    /// Creates a member.
    public init(_ key: String, _ value: ExpectedValue) {
        self.key = key
        self.value = value
    }
}

/// The rendering of protocol messages that §7 prescribes, read from raw payloads.
public enum ExpectedRendering {
    /// The lower-case names of §4's enumerations, from their first value.
    static let sessionEvents = (1, ["begin", "end"])
    static let batteryStates = (0, ["ok", "eri", "eos"])
    static let pumpStates = (0, ["infusing", "stopped", "minimum_rate", "critical_alarm", "end_of_service"])
    static let dosingModes = (0, ["simple_continuous", "flex", "periodic_bolus", "single_bolus", "prime"])
    static let volumeSources = (0, ["calculated", "measured"])
    /// `alarm_code` names (1 … 8).
    public static let alarmCodes = (1, ["low_reservoir", "empty_reservoir", "eri", "eos", "motor_stall", "low_battery_reset", "memory_error", "flow_fault"])
    /// `alarm_priority` names (1 … 4).
    public static let alarmPriorities = (1, ["high", "medium", "low", "info"])
    static let alarmTransitions = (1, ["raised", "cleared"])
    static let ackStatuses = (1, ["stored", "rejected"])

    /// The name of `raw` in `table`, or nil when this version does not know it.
    public static func name(_ raw: Int, in table: (Int, [String])) -> String? {
        let index = raw - table.0
        return table.1.indices.contains(index) ? table.1[index] : nil
    }

    /// The fields of a message of `type` with `payload` (at least its minimum length) as §7
    /// renders them; empty for a type this version does not know.
    public static func fields(type: MessageType, payload p: [UInt8]) -> [ExpectedField] {
        func e(_ key: String, _ raw: Int, _ table: (Int, [String])) -> ExpectedField {
            ExpectedField(key, .enumeration(name: name(raw, in: table), raw: raw))
        }
        switch type {
        case .programmerInfo:
            let firmware = u32(p, 8)
            return [
                ExpectedField("boot_id", .string(hex16(u64(p, 0)))),
                ExpectedField("firmware_version", .string("\(firmware >> 16).\(firmware >> 8 & 0xFF).\(firmware & 0xFF)")),
                ExpectedField("protocol_minor", .integer(Int128(u16(p, 12)))),
                ExpectedField("programmer_serial", .text(text(p, 16, 16))),
                ExpectedField("hardware_model", .text(text(p, 32, 16))),
            ]
        case .pumpSession:
            return [
                ExpectedField("implant_date", .time(i64(p, 0))),
                ExpectedField("eri_date", .time(i64(p, 8))),
                ExpectedField("reservoir_capacity_ul", .integer(Int128(u32(p, 16)))),
                ExpectedField("manufacturer_code", .integer(Int128(u16(p, 20)))),
                e("event", Int(p[22]), sessionEvents),
                e("battery_state", Int(p[23]), batteryStates),
                ExpectedField("pump_model", .text(text(p, 24, 16))),
                ExpectedField("pump_serial", .text(text(p, 40, 16))),
            ]
        case .pumpStatus:
            let mask = u32(p, 16)
            return [
                ExpectedField("device_time", .time(i64(p, 0))),
                ExpectedField("daily_dose_ug", .tenths(Int128(u32(p, 8)))),
                ExpectedField("concentration_ug_per_ml", .integer(Int128(u32(p, 12)))),
                ExpectedField("active_alarm_mask", .integer(Int128(mask))),
                ExpectedField("active_alarms", .strings(alarmNames(mask))),
                e("pump_state", Int(p[20]), pumpStates),
                e("dosing_mode", Int(p[21]), dosingModes),
                ExpectedField("link_quality_pct", p[22] == 255 ? .null : .integer(Int128(p[22]))),
            ]
        case .reservoir:
            return [
                ExpectedField("device_time", .time(i64(p, 0))),
                ExpectedField("last_refill_time", .time(i64(p, 8))),
                ExpectedField("volume_ul", .tenths(Int128(u32(p, 16)))),
                ExpectedField("capacity_ul", .integer(Int128(u32(p, 20)))),
                ExpectedField("low_reservoir_threshold_ul", .integer(Int128(u32(p, 24)))),
                ExpectedField("delivered_since_refill_ul", .tenths(Int128(u32(p, 28)))),
                e("volume_source", Int(p[32]), volumeSources),
            ]
        case .doseProgram:
            let steps = Int(p[21]), boluses = Int(p[22])
            let flex: [[ExpectedField]] = (0..<steps).map { i in
                let at = 24 + 8 * i
                return [ExpectedField("start_minute", .integer(Int128(u16(p, at)))),
                        ExpectedField("rate_ug_per_day", .tenths(Int128(u32(p, at + 4))))]
            }
            let periodic: [[ExpectedField]] = (0..<boluses).map { i in
                let at = 24 + 8 * (steps + i)
                return [ExpectedField("start_minute", .integer(Int128(u16(p, at)))),
                        ExpectedField("duration_min", .integer(Int128(u16(p, at + 2)))),
                        ExpectedField("dose_ug", .tenths(Int128(u32(p, at + 4))))]
            }
            return [
                ExpectedField("device_time", .time(i64(p, 0))),
                ExpectedField("daily_dose_ug", .tenths(Int128(u32(p, 8)))),
                ExpectedField("patient_bolus_dose_ug", .tenths(Int128(u32(p, 12)))),
                ExpectedField("patient_bolus_lockout_min", .integer(Int128(u16(p, 16)))),
                ExpectedField("patient_bolus_max_per_day", .integer(Int128(u16(p, 18)))),
                e("mode", Int(p[20]), dosingModes),
                ExpectedField("flex_steps", .objects(flex)),
                ExpectedField("periodic_boluses", .objects(periodic)),
            ]
        case .refill:
            return [
                ExpectedField("refill_time", .time(i64(p, 0))),
                ExpectedField("concentration_ug_per_ml", .integer(Int128(u32(p, 8)))),
                ExpectedField("volume_filled_ul", .integer(Int128(u32(p, 12)))),
                ExpectedField("expected_residual_ul", .integer(Int128(u32(p, 16)))),
                ExpectedField("measured_residual_ul", .integer(Int128(u32(p, 20)))),
                ExpectedField("drug_lot", .text(text(p, 24, 16))),
            ]
        case .alarm:
            let code = Int(u16(p, 12))
            return [
                ExpectedField("onset_time", .time(i64(p, 0))),
                ExpectedField("alarm_id", .integer(Int128(u32(p, 8)))),
                ExpectedField("code", .string(name(code, in: alarmCodes) ?? "unknown")),
                ExpectedField("code_raw", .integer(Int128(code))),
                e("priority", Int(p[14]), alarmPriorities),
                e("transition", Int(p[15]), alarmTransitions),
                ExpectedField("detail", .text(alarmDetail(p))),
            ]
        case .heartbeat:
            return [
                ExpectedField("boot_id", .string(hex16(u64(p, 0)))),
                ExpectedField("uptime_s", .integer(Int128(u32(p, 8)))),
                ExpectedField("highest_alarm_id", .integer(Int128(u32(p, 12)))),
                ExpectedField("unacked_alarm_count", .integer(Int128(u32(p, 16)))),
            ]
        case .ack:
            return [
                ExpectedField("acked_seq", .integer(Int128(u32(p, 0)))),
                ExpectedField("alarm_id", .integer(Int128(u32(p, 4)))),
                ExpectedField("status", .enumeration(name: name(Int(p[10]), in: ackStatuses), raw: Int(p[10]))),
            ]
        case .hostHeartbeat:
            return [ExpectedField("host_time", .time(i64(p, 0))), ExpectedField("uptime_s", .integer(Int128(u32(p, 8))))]
        default:
            return []
        }
    }

    /// The detail bytes of an `ALARM` payload: `detail_length` bytes, or up to a NUL before that.
    public static func alarmDetail(_ p: [UInt8]) -> [UInt8] {
        Array(p[24..<(24 + Int(p[16]))].prefix { $0 != 0 })
    }

    /// §7's `active_alarms` for a mask: code names in ascending bit order, `unknown_<k+1>` for bits
    /// this version does not know.
    public static func alarmNames(_ mask: UInt32) -> [String] {
        (0..<32).filter { mask >> $0 & 1 == 1 }.map { name($0 + 1, in: alarmCodes) ?? "unknown_\($0 + 1)" }
    }

    // MARK: - Checking a rendering

    /// Compares `object` with `expected`; returns one line per difference (empty: it matches).
    /// Members `object` has beyond `expected` are not differences (the API adds its own), except a
    /// `<key>_raw` next to an expected key that must not have one.
    public static func differences(_ object: JSONFields, _ expected: [ExpectedField], path: String = "") -> [String] {
        var problems: [String] = []
        for field in expected {
            let key = field.key
            let actual = object[key]
            let raw = object[key + "_raw"]
            func problem(_ text: String) { problems.append("\(path)\(key): \(text)") }
            switch field.value {
            case .integer(let value):
                if actual?.integer != value { problem("expected \(value), got \(actual?.description ?? "nothing")") }
            case .tenths(let value):
                if actual?.tenths != value { problem("expected \(value)/10, got \(actual?.description ?? "nothing")") }
            case .string(let value):
                if actual?.string != value { problem("expected \(String(reflecting: value)), got \(actual?.description ?? "nothing")") }
            case .text(let bytes):
                if let message = textProblem(actual, bytes) { problem(message) }
            case .enumeration(let name, let rawValue):
                if let name {
                    if actual?.string != name { problem("expected \(String(reflecting: name)), got \(actual?.description ?? "nothing")") }
                    if let raw { problem("a known value has \(key)_raw = \(raw)") }
                } else {
                    if actual?.string != "unknown" { problem("raw \(rawValue): expected \"unknown\", got \(actual?.description ?? "nothing")") }
                    if raw?.integer != Int128(rawValue) { problem("expected \(key)_raw = \(rawValue), got \(raw?.description ?? "nothing")") }
                }
            case .time(let ms):
                if let message = timeProblem(actual, raw: raw, ms) { problem(message) }
            case .null:
                if actual != .null { problem("expected null, got \(actual?.description ?? "nothing")") }
            case .strings(let list):
                if actual?.array?.map(\.string) != list.map({ Optional($0) }) { problem("expected \(list), got \(actual?.description ?? "nothing")") }
            case .objects(let list):
                guard let elements = actual?.array, elements.count == list.count else {
                    problem("expected \(list.count) objects, got \(actual?.description ?? "nothing")")
                    continue
                }
                for (index, (element, fields)) in zip(elements, list).enumerated() {
                    guard let member = element.object else {
                        problem("[\(index)] is not an object: \(element)")
                        continue
                    }
                    problems += differences(member, fields, path: "\(path)\(key)[\(index)].")
                }
            }
        }
        return problems
    }

    /// Why `actual` is not the rendering of the `char[N]` text `bytes`, or nil when it is.
    public static func textProblem(_ actual: ExactJSON?, _ bytes: [UInt8]) -> String? {
        guard case .string(let text) = actual else { return "expected a string for bytes \(hex(bytes)), got \(actual?.description ?? "nothing")" }
        let wanted = bytes.map { Unicode.Scalar($0) }
        guard text.scalars == wanted else {
            return "bytes \(hex(bytes)) rendered as \(text.source), which reads back as \(text.scalars.map { "U+" + String($0.value, radix: 16) }.joined(separator: " "))"
        }
        for (scalar, escaped) in zip(text.scalars, text.escaped) where !(0x20...0x7E).contains(scalar.value) && !escaped {
            return "bytes \(hex(bytes)) rendered as \(text.source): U+\(String(scalar.value, radix: 16)) is not escaped as \\u00XX"
        }
        return nil
    }

    /// Why `actual` (and `raw`, the `<field>_raw` member) is not the rendering of time `ms`, or nil.
    public static func timeProblem(_ actual: ExactJSON?, raw: ExactJSON?, _ ms: Int64) -> String? {
        if ms == 0 {
            if actual != .null { return "absent time (0) rendered as \(actual?.description ?? "nothing"), not null" }
            if let raw { return "absent time (0) has a _raw member \(raw)" }
            return nil
        }
        if ms < ExtremeDraw.earliestRFC3339Ms || ms > ExtremeDraw.latestRFC3339Ms {
            if actual != .null { return "time \(ms) is outside years 0001–9999 but rendered as \(actual?.description ?? "nothing"), not null" }
            if raw?.integer != Int128(ms) { return "time \(ms) outside years 0001–9999: expected _raw = \(ms), got \(raw?.description ?? "nothing")" }
            return nil
        }
        guard let text = actual?.string else { return "time \(ms) rendered as \(actual?.description ?? "nothing"), not an RFC 3339 string" }
        guard let read = RFC3339Check.milliseconds(text) else { return "time \(ms) rendered as \(String(reflecting: text)): not YYYY-MM-DDTHH:MM:SS.mmmZ in years 0001–9999" }
        if read != ms { return "time \(ms) rendered as \(String(reflecting: text)), which reads back as \(read)" }
        if let raw { return "time \(ms) in range has a _raw member \(raw)" }
        return nil
    }

    // MARK: - Reading payloads

    /// The little-endian u16 at `at`.
    public static func u16(_ p: [UInt8], _ at: Int) -> UInt16 { UInt16(p[at]) | UInt16(p[at + 1]) << 8 }
    /// The little-endian u32 at `at`.
    public static func u32(_ p: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(p[at + $1]) << (8 * $1) } }
    /// The little-endian u64 at `at`.
    public static func u64(_ p: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(p[at + $1]) << (8 * $1) } }
    /// The little-endian i64 at `at`.
    public static func i64(_ p: [UInt8], _ at: Int) -> Int64 { Int64(bitPattern: u64(p, at)) }
    /// A `char[width]` field at `at`, up to its first NUL.
    public static func text(_ p: [UInt8], _ at: Int, _ width: Int) -> [UInt8] { Array(p[at..<(at + width)].prefix { $0 != 0 }) }
    /// 16 lower-case hex digits (§7's `boot_id`).
    public static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
    /// Bytes as `43 50 01`, for messages.
    public static func hex(_ bytes: [UInt8]) -> String { bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ") }
}

/// Strict reading of the API's timestamps: `YYYY-MM-DDTHH:MM:SS.mmmZ` exactly (§7), a real
/// calendar date in years 0001–9999.
public enum RFC3339Check {
    /// The milliseconds since the epoch that `text` names, or nil when it is not exactly a §7
    /// timestamp (other forms, impossible dates such as February 30, years outside 0001–9999).
    public static func milliseconds(_ text: String) -> Int64? {
        let b = Array(text.utf8)
        guard b.count == 24, b[4] == 0x2D, b[7] == 0x2D, b[10] == 0x54, b[13] == 0x3A, b[16] == 0x3A, b[19] == 0x2E, b[23] == 0x5A else { return nil }
        func number(_ from: Int, _ count: Int) -> Int64? {
            var value: Int64 = 0
            for byte in b[from..<(from + count)] {
                guard byte >= 0x30, byte <= 0x39 else { return nil }
                value = value * 10 + Int64(byte - 0x30)
            }
            return value
        }
        guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2),
              let minute = number(14, 2), let second = number(17, 2), let millis = number(20, 3),
              year >= 1, (1...12).contains(month), hour < 24, minute < 60, second < 60 else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let monthDays: [Int64] = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard day >= 1, day <= monthDays[Int(month) - 1] else { return nil }
        // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis
    }
}
